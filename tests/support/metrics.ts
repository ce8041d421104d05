import { createRequire } from 'node:module';
import { expect } from 'chai';

/**
 * One scrape of a Prometheus endpoint: each sample's value by its series, e.g.
 * `http_requests_total{method="GET",route="/"}`.
 */
export type Scrape = Map<string, number>;

const SAMPLE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g;

/** The series key of a metric and its labels, in label-name order (the exposition's own order may differ). */
export const series = (name: string, labels: Record<string, string | number> = {}): string => {
  const pairs = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([label, value]) => `${label}="${value}"`);
  return pairs.length === 0 ? name : `${name}{${pairs.join(',')}}`;
};

/** Fetches an endpoint in Prometheus' text format (version 0.0.4) and reads every sample. */
export async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url);
  const text = await response.text();
  expect(response.status, `${url}: ${text.slice(0, 200)}`).to.equal(200);
  expect(response.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
  const samples: Scrape = new Map();
  for (const line of text.split('\n')) {
    const [, name, labelText = '', value] = SAMPLE.exec(line) ?? [];
    if (!name || value === undefined) continue;
    const labels = Object.fromEntries([...labelText.matchAll(LABEL)].map(([, label, text]) => [label!, text!]));
    samples.set(series(name, labels), Number(value));
  }
  return samples;
}

/** How far a series moved between two scrapes (a series that was not there yet counts from 0). */
export const moved = (
  before: Scrape,
  after: Scrape,
  name: string,
  labels: Record<string, string | number> = {},
): number => {
  const key = series(name, labels);
  expect(after.has(key), `${key} in the second scrape`).to.equal(true);
  return after.get(key)! - (before.get(key) ?? 0);
};

/** The PM2 instances of each app, as ecosystem.config.cjs starts them. */
const { apps } = createRequire(import.meta.url)('../../ecosystem.config.cjs') as {
  apps: Array<{ name: string; instances: number }>;
};
export const instancesOf = (app: string): number => apps.find(({ name }) => name === app)?.instances ?? 1;

/** The metrics URL of each instance of a PM2 app: instance i serves on the app's metrics port + i. */
export const instanceUrls = (app: string, host: string, port: number): string[] =>
  Array.from({ length: instancesOf(app) }, (_, instance) => `http://${host}:${port + instance}/metrics`);

/** Scrapes every instance of an app and adds their samples up, as Prometheus' sum() over its targets would. */
export async function scrapeInstances(urls: string[]): Promise<Scrape> {
  const total: Scrape = new Map();
  for (const samples of await Promise.all(urls.map(scrape))) {
    for (const [key, value] of samples) total.set(key, (total.get(key) ?? 0) + value);
  }
  return total;
}
