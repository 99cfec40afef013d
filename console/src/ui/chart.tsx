/**
 * A line chart drawn by hand in SVG: no chart library, nothing inline (the CSP has no
 * `unsafe-inline`), colours by class from the stylesheet. One point per bucket, in order, so a
 * minute with nothing in it is drawn at zero rather than skipped. The SVG is one image to assistive
 * technology (role="img", its label says the totals); the axis text inside it is not read out.
 */

export interface ChartSeries {
  /** For the legend and the path's `data-series`. */
  name: string;
  /** `series-ok`, `series-failed`, `series-lag`, … */
  className: string;
  values: number[];
}

const WIDTH = 640;
const HEIGHT = 180;
const LEFT = 52;
const RIGHT = 12;
const TOP = 10;
const BOTTOM = 24;

/** 1, 2 or 5 times a power of ten, at least `value`: axis tops a reader can take in at a glance. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

/** `M x,y L x,y …` through every value, `top` at the chart's top edge. */
export function linePath(values: number[], top: number): string {
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const step = values.length > 1 ? plotWidth / (values.length - 1) : 0;
  return values
    .map((value, i) => {
      const x = LEFT + i * step;
      const y = TOP + plotHeight - (Math.max(0, value) / top) * plotHeight;
      return `${i === 0 ? 'M' : 'L'}${round(x)},${round(y)}`;
    })
    .join(' ');
}

function hourMinute(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

export function LineChart({
  label,
  times,
  series,
  formatTick,
}: {
  /** What the chart says, for people who cannot see it (role="img"). */
  label: string;
  /** The start of each bucket (RFC 3339), one per value. */
  times: string[];
  series: ChartSeries[];
  formatTick(value: number): string;
}) {
  const top = niceCeiling(Math.max(0, ...series.flatMap((one) => one.values)));
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const yTicks = [0, top / 2, top];
  const xTicks = times.length > 0 ? [0, Math.floor((times.length - 1) / 2), times.length - 1] : [];
  const step = times.length > 1 ? (WIDTH - LEFT - RIGHT) / (times.length - 1) : 0;
  return (
    <figure class="chart-figure">
      <svg class="chart" role="img" aria-label={label} viewBox={`0 0 ${WIDTH} ${HEIGHT}`}>
        {yTicks.map((tick) => {
          const y = round(TOP + plotHeight - (tick / top) * plotHeight);
          return (
            <g key={tick}>
              <line class="axis" x1={LEFT} x2={WIDTH - RIGHT} y1={y} y2={y} />
              <text class="tick" x={LEFT - 6} y={y + 4} text-anchor="end">
                {formatTick(tick)}
              </text>
            </g>
          );
        })}
        {xTicks.map((index) => (
          <text
            key={index}
            class="tick"
            x={round(LEFT + index * step)}
            y={HEIGHT - 6}
            text-anchor={index === 0 ? 'start' : index === times.length - 1 ? 'end' : 'middle'}
          >
            {hourMinute(times[index]!)}
          </text>
        ))}
        {series.map((one) => (
          <path key={one.name} class={one.className} data-series={one.name} d={linePath(one.values, top)} />
        ))}
      </svg>
      <figcaption class="legend">
        {series.map((one) => (
          <span key={one.name}>
            <span class={`swatch ${one.className.replace('series-', '')}`} aria-hidden="true" />
            {one.name}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
