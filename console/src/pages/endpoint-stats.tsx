import { LineChart } from '../ui/chart.js';
import { useInterval, useLoad } from '../ui/hooks.js';
import { ErrorNote, Loading } from '../ui/parts.js';
import type { EndpointApi, EndpointStats, StatsBucket } from './endpoint-api.js';

/** How often the chart asks again while the tab is visible: the stats are per minute, so 5 s is plenty. */
const REFRESH_MS = 5_000;

const perSecond = (count: number) => count / 60;
const failures = (bucket: Pick<StatsBucket, 'failed' | 'dead'>) => bucket.failed + bucket.dead;

function rate(value: number): string {
  return value === 0 ? '0' : value < 0.1 ? value.toFixed(3) : value < 10 ? value.toFixed(2) : value.toFixed(0);
}

/** An axis tick of lag: seconds from 1 s up, so "10000 ms" does not outgrow the axis's margin. */
function lagTick(value: number): string {
  return value >= 1000 ? `${rate(value / 1000)} s` : `${rate(value)} ms`;
}

function ms(value: number | null): string {
  return value === null ? '—' : `${Math.round(value)} ms`;
}

function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/**
 * The last hour of an endpoint from GET …/{id}/stats?window=1h (pre-aggregated per minute by the
 * delivery process): cards, a chart of deliveries and failures per second, one of the
 * 202→first-attempt lag, and the same numbers as a table.
 */
export function EndpointStatsPanel({ api, id }: { api: EndpointApi; id: string }) {
  const stats = useLoad(() => api.stats(id), [id]);
  useInterval(stats.reload, REFRESH_MS);
  return (
    <section aria-labelledby="stats-title">
      <h2 id="stats-title">Last hour</h2>
      <ErrorNote error={stats.error} />
      {stats.data === undefined ? stats.loading && <Loading what="the last hour" /> : <StatsView stats={stats.data} />}
    </section>
  );
}

function StatsView({ stats }: { stats: EndpointStats }) {
  const { totals, buckets } = stats;
  const times = buckets.map((bucket) => bucket.at);
  const span = `from ${clock(stats.from)} to ${clock(stats.to)}`;
  const failed = failures(totals);
  return (
    <>
      <div class="cards">
        <Card label="Delivered (attempts that succeeded)" value={String(totals.succeeded)} />
        <Card label="Failed attempts" value={String(failed)} />
        <Card label="Dead (out of retries)" value={String(totals.dead)} />
        <Card label="202→attempt lag, average" value={ms(totals.lag_ms_avg)} />
        <Card label="202→attempt lag, max" value={ms(totals.lag_ms_max)} />
        <Card label="Latency, average" value={ms(totals.latency_ms_avg)} />
      </div>
      <h3>Deliveries and failures per second</h3>
      <LineChart
        label={`Deliveries per second, minute by minute ${span}: ${totals.succeeded} succeeded and ${failed} failed (${totals.dead} dead) in the hour.`}
        times={times}
        formatTick={rate}
        series={[
          {
            name: 'Succeeded per second',
            className: 'series-ok',
            values: buckets.map((bucket) => perSecond(bucket.succeeded)),
          },
          {
            name: 'Failed per second',
            className: 'series-failed',
            values: buckets.map((bucket) => perSecond(failures(bucket))),
          },
        ]}
      />
      <h3>202→first attempt lag</h3>
      <LineChart
        label={`202 to first attempt lag, minute by minute ${span}: ${totals.first_attempts} first attempts, average ${ms(totals.lag_ms_avg)}, longest ${ms(totals.lag_ms_max)}.`}
        times={times}
        formatTick={lagTick}
        series={[
          { name: 'Lag, average', className: 'series-lag', values: buckets.map((bucket) => bucket.lag_ms_avg ?? 0) },
          { name: 'Lag, max', className: 'series-lag-max', values: buckets.map((bucket) => bucket.lag_ms_max ?? 0) },
        ]}
      />
      <details>
        <summary>The numbers, minute by minute</summary>
        <table class="list stats-table">
          <caption>Attempts per minute {span}</caption>
          <thead>
            <tr>
              <th scope="col">Minute</th>
              <th scope="col">Succeeded</th>
              <th scope="col">Failed</th>
              <th scope="col">Dead</th>
              <th scope="col">First attempts</th>
              <th scope="col">Lag avg (ms)</th>
              <th scope="col">Lag max (ms)</th>
              <th scope="col">Latency avg (ms)</th>
            </tr>
          </thead>
          <tbody>
            {buckets.map((bucket) => (
              <tr key={bucket.at}>
                <td>
                  <time dateTime={bucket.at}>{clock(bucket.at)}</time>
                </td>
                <td>{bucket.succeeded}</td>
                <td>{bucket.failed}</td>
                <td>{bucket.dead}</td>
                <td>{bucket.first_attempts}</td>
                <td>{bucket.lag_ms_avg ?? '—'}</td>
                <td>{bucket.lag_ms_max ?? '—'}</td>
                <td>{bucket.latency_ms_avg ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
      <p class="muted small-print">Refreshed every {REFRESH_MS / 1000} s while this tab is visible.</p>
    </>
  );
}

function Card({ label, value }: { label: string; value: string }) {
  return (
    <div class="card">
      <div class="value">{value}</div>
      <div class="label">{label}</div>
    </div>
  );
}
