import { expect } from 'chai';

/** One scrape of a Prometheus endpoint: each sample's value by its series, e.g. `http_requests_total{method="GET",route="/"}`. */
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
export const moved = (before: Scrape, after: Scrape, name: string, labels: Record<string, string | number> = {}): number => {
  const key = series(name, labels);
  expect(after.has(key), `${key} in the second scrape`).to.equal(true);
  return after.get(key)! - (before.get(key) ?? 0);
};
