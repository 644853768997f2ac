// The dtypes bench's chart: a vega-lite spec of grouped bars (one group per workload case, one bar
// per dtype or peer), compiled by vega-lite and rendered to SVG by vega in Node (no browser).
import * as vega from 'vega';
import * as vl from 'vega-lite';

/**
 * Two rows of grouped bars from `bars` [{ workload, case, series, speedup, gops }], one column per
 * workload in the order of `bars` (independent x scales): speed-up over f32 of the same case, and
 * G(FL)OP/s (GOP/s for int8). Bars without a number (a dtype not available, a peer not timed) are left out.
 */
export function chartSpec(bars, title) {
  const values = bars.filter((b) => Number.isFinite(b.speedup) && Number.isFinite(b.gops));
  const workloads = [...new Set(values.map((b) => b.workload))];
  const panel = (field, axisTitle, rule) => ({
    facet: { column: { field: 'workload', type: 'nominal', title: null, sort: workloads, header: { labelLimit: 400 } } },
    spec: {
      width: { step: 12 },
      height: 180,
      layer: [
        { mark: 'bar', encoding: {
          x: { field: 'case', type: 'nominal', title: null, sort: null, axis: { labelAngle: -40, labelLimit: 240 } },
          xOffset: { field: 'series', type: 'nominal', sort: null },
          y: { field, type: 'quantitative', title: axisTitle },
          color: { field: 'series', type: 'nominal', sort: null, title: 'dtype / peer' },
          tooltip: [{ field: 'series' }, { field: 'case' }, { field, type: 'quantitative', format: '.2f' }],
        } },
        ...(rule ? [{ mark: { type: 'rule', strokeDash: [4, 3], color: 'gray' }, encoding: { y: { datum: rule } } }] : []),
      ],
    },
    resolve: { scale: { x: 'independent' } },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    vconcat: [panel('speedup', 'speed-up over f32 (x)', 1), panel('gops', 'GFLOP/s (int8: GOP/s)', null)],
    config: { font: 'sans-serif', background: 'white', legend: { labelLimit: 300 } },
  };
}

/** SVG text of a vega-lite spec (vega's headless renderer). */
export async function renderSvg(spec) {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
