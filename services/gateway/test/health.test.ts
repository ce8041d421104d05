import { request } from '@crud-master/test-support/http';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import { gatewayUnderTest } from './gateway-under-test.js';

describe('api-gateway: health and unknown routes', () => {
  const gw = gatewayUnderTest();

  it('When the broker is connected, then /healthz and /readyz answer 200', async () => {
    expect((await request(`${gw.base}/healthz`)).body).to.deep.equal({ status: 'ok' });
    expect((await request(`${gw.base}/readyz`)).body).to.deep.equal({ status: 'ready' });
  });

  it('When a route does not exist, then the gateway answers 404 problem+json', async () => {
    expectProblem(await request(`${gw.base}/api/moviesX`), 404);
    expectProblem(await request(`${gw.base}/api/billing`), 405);
  });
});
