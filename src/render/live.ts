// The page `lens serve` serves: one self-contained document (inline style and script, nothing from
// another origin) that posts prompts to /api/run and draws the layer × position grid, a cell's
// top-k, and pinned tokens' probability and rank by layer. Its whole view state lives in the URL.
import { darkTextOn, rampColor } from './grid.js';
import { SVG_SERIES_COLORS, xmlEscape } from './svg.js';

export interface LiveModel { model: string; layers: number; contextLength: number; /** Whether a tuned lens is loaded for it. */ tuned?: boolean }

/** The colour ramp the page interpolates: 17 stops over [0, 1], each with whether dark text reads on it. */
function rampStops(): { rgb: string; dark: boolean }[] {
  return Array.from({ length: 17 }, (_, s) => ({ rgb: `rgb(${rampColor(s / 16).join(',')})`, dark: darkTextOn(s / 16) }));
}

const STYLE = `
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 8px}
h2{font-size:16px;margin:20px 0 6px}
form{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:end;margin-bottom:8px}
form .field{display:flex;flex-direction:column;gap:2px}
form label{font-size:12px;color:#444}
#prompt{width:min(640px,90vw);font:14px ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
input[type=number]{width:5em}
button{font-size:14px;padding:4px 12px}
#status{min-height:1.2em;color:#555;font-size:13px;margin:4px 0}
#status.error{color:#b00}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
th,td{padding:3px 6px;white-space:pre}
th[role=rowheader]{text-align:right}
th[role=columnheader]{font-weight:normal;text-align:center}
td[role=gridcell]{min-width:70px;height:30px;text-align:center;cursor:pointer;border:1px solid #fff;line-height:1.2}
td[role=gridcell]:focus{outline:2px solid #d33;outline-offset:-2px}
td[role=gridcell][aria-selected=true]{outline:3px solid #000;outline-offset:-3px}
.val{font-size:10px;opacity:.9}
#topk{border:1px solid #888;border-radius:4px;padding:8px 10px;margin:10px 0;max-width:520px;box-shadow:0 2px 8px rgba(0,0,0,.2)}
#topk[hidden]{display:none}
#topk td{padding:1px 6px}
#topk td.num{text-align:right}
#topk button{font-size:11px;padding:0 6px}
#pins ul{list-style:none;padding:0;margin:4px 0;display:flex;gap:8px;flex-wrap:wrap}
#pins li{border:1px solid #ccc;border-radius:3px;padding:2px 6px;font-family:ui-monospace,monospace;font-size:12px}
#pins li button{font-size:11px;margin-left:4px}
.charts{display:flex;gap:18px;flex-wrap:wrap}
.charts svg{border:1px solid #eee}
.legend{font-size:12px}
#attribution td{padding:1px 6px}
#attribution td.num{text-align:right}
#attribution .bar{display:inline-block;height:10px}
#attribution .error{color:#b00}
.field[hidden]{display:none}
.grids{display:flex;gap:14px;align-items:flex-start;overflow-x:auto}
.comparison{display:contents}
.comparison[hidden]{display:none}
#prompt2{width:min(320px,60vw);font:14px ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
`;

// The page's behaviour, as a plain script (no build step, no imports). `CONFIG` is filled in per page.
const SCRIPT = String.raw`
(function () {
  'use strict';
  var models = CONFIG.models, ramp = CONFIG.ramp, colors = CONFIG.colors;
  var $ = function (id) { return document.getElementById(id); };
  var form = $('run-form'), promptBox = $('prompt'), modelBox = $('model'), byBox = $('by'), strideBox = $('stride'), kBox = $('k');
  var statusLine = $('status'), gridBox = $('heatmap'), topkBox = $('topk'), pinList = $('pin-list'), chartBox = $('pin-chart');
  var compareBox = $('compare'), prompt2Box = $('prompt2'), model2Box = $('model2'), gridsBox = $('grids'), comparison = $('comparison');
  var gridBoxB = $('heatmap-b'), diffBox = $('diff'), exportButton = $('export-svg'), lensBox = $('lens'), attrBox = $('attr'), attrPanel = $('attribution');
  var state = { prompt: '', model: models[0].model, by: 'prob', stride: 1, k: 10, pins: [], cell: null, compare: false, prompt2: '', model2: models[0].model, lens: 'tuned', attr: false };
  var anyTuned = models.some(function (m) { return m.tuned; });
  function hasTuned(model) { return models.some(function (m) { return m.model === model && m.tuned; }); }
  // records: the first side's; recordsB: the comparison's (the second prompt, or the same under the second model).
  var records = null, recordsB = null, pinTexts = {}, running = 0;

  var UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/g;
  function quote(text) {
    return JSON.stringify(text).replace(UNSAFE, function (c) { return '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'); });
  }
  function cut(text, width) { var q = quote(text); return q.length <= width ? q : q.slice(0, width - 2) + '\u2026"'; }
  function percent(p) { return p >= 0.9995 ? '100%' : p >= 0.001 ? (p * 100).toFixed(1) + '%' : p === 0 ? '0' : p.toExponential(0); }
  function nats(v) { return v < 9.995 ? v.toFixed(2) : v < 99.95 ? v.toFixed(1) : v.toFixed(0); }
  function label_(layer, last) { return 'L' + String(layer).padStart(Math.max(2, String(last).length), '0'); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { if (attrs[name] !== undefined) node.setAttribute(name, attrs[name]); });
    (children || []).forEach(function (child) { node.append(child); });
    return node;
  }
  function svg(tag, attrs, children) {
    var node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    (children || []).forEach(function (child) { node.append(child); });
    return node;
  }

  // The view state <-> the URL's query, so a reload or a shared link shows the same view.
  function writeUrl() {
    var q = new URLSearchParams();
    if (state.prompt) q.set('prompt', state.prompt);
    if (models.length > 1) q.set('model', state.model);
    if (state.by !== 'prob') q.set('by', state.by);
    if (state.stride !== 1) q.set('stride', String(state.stride));
    if (state.k !== 10) q.set('k', String(state.k));
    if (state.pins.length) q.set('pin', state.pins.join(','));
    if (state.cell) q.set('cell', state.cell.layer + ',' + state.cell.position);
    if (anyTuned && state.lens !== 'tuned') q.set('lens', state.lens);
    if (state.attr) q.set('attr', '1');
    if (state.compare) {
      q.set('compare', '1');
      if (state.prompt2) q.set('prompt2', state.prompt2);
      if (models.length > 1) q.set('model2', state.model2);
    }
    var search = q.toString();
    history.replaceState(null, '', search ? '?' + search : location.pathname);
  }
  function readUrl() {
    var q = new URLSearchParams(location.search);
    var whole = function (v, min, fallback) { var n = Number(v); return v !== null && Number.isInteger(n) && n >= min ? n : fallback; };
    state.prompt = q.get('prompt') || '';
    var model = q.get('model');
    if (model && models.some(function (m) { return m.model === model; })) state.model = model;
    if (['prob', 'entropy', 'kl', 'pinned'].indexOf(q.get('by')) >= 0) state.by = q.get('by');
    state.stride = whole(q.get('stride'), 1, 1);
    state.k = Math.min(50, whole(q.get('k'), 1, 10));
    state.pins = (q.get('pin') || '').split(',').filter(function (s) { return /^\d+$/.test(s); }).map(Number);
    var cell = (q.get('cell') || '').split(',');
    state.cell = cell.length === 2 && /^\d+$/.test(cell[0]) && /^\d+$/.test(cell[1]) ? { layer: Number(cell[0]), position: Number(cell[1]) } : null;
    state.compare = q.get('compare') === '1';
    state.lens = q.get('lens') === 'logit' ? 'logit' : 'tuned';
    state.attr = q.get('attr') === '1';
    lensBox.value = state.lens; attrBox.checked = state.attr;
    state.prompt2 = q.get('prompt2') || '';
    var model2 = q.get('model2');
    if (model2 && models.some(function (m) { return m.model === model2; })) state.model2 = model2;
    compareBox.checked = state.compare; prompt2Box.value = state.prompt2; model2Box.value = state.model2;
    promptBox.value = state.prompt; modelBox.value = state.model; byBox.value = state.by; strideBox.value = state.stride; kBox.value = state.k;
  }

  function setStatus(text, error) { statusLine.textContent = text; statusLine.className = error ? 'error' : ''; statusLine.setAttribute('role', error ? 'alert' : 'status'); }

  // One side's records from /api/run; rejects with the server's message.
  function fetchRecords(prompt, model) {
    return fetch('/api/run', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: prompt, model: model, positions: ':', k: state.k, targets: state.pins.map(function (id) { return { id: id }; }), lens: hasTuned(model) ? state.lens : undefined }),
    }).then(function (response) {
      return response.json().then(function (body) { if (!response.ok) throw new Error(body.error || 'error'); return body.records; });
    });
  }
  function secondPrompt() { return state.prompt2 || state.prompt; }

  function run() {
    if (!state.prompt) return;
    var mine = ++running;
    setStatus('running\u2026');
    Promise.all([fetchRecords(state.prompt, state.model), state.compare ? fetchRecords(secondPrompt(), state.model2) : null]).then(function (answers) {
      if (mine !== running) return;
      records = answers[0]; recordsB = answers[1];
      records[0].layers[0].targets.forEach(function (t) { pinTexts[t.id] = t.text; });
      setStatus(records[0].tokens.length + ' tokens \u00b7 ' + state.model + (recordsB ? ' \u00b7 compared with ' + recordsB[0].tokens.length + ' tokens \u00b7 ' + state.model2 : ''));
      draw();
    }).catch(function (error) { if (mine === running) setStatus(error.message || String(error), true); });
  }

  // The layers shown: every stride-th, and always the last.
  function shownSites(records) {
    var last = records[0].layers[records[0].layers.length - 1].layer;
    var sites = [];
    records[0].layers.forEach(function (entry, i) { if (entry.layer % state.stride === 0 || entry.layer === last) sites.push(i); });
    return sites;
  }
  function valueOf(entry) {
    if (state.by === 'entropy') return entry.entropy;
    if (state.by === 'kl') return entry.kl_to_final;
    if (state.by === 'pinned') return entry.targets.length ? entry.targets[0].prob : 0;
    return entry.top[0].prob;
  }
  function color(t) {
    var stop = ramp[Math.round(Math.min(1, Math.max(0, t || 0)) * (ramp.length - 1))];
    return { background: stop.rgb, text: stop.dark ? '#000' : '#fff' };
  }

  function natsScale() { return state.by === 'entropy' || state.by === 'kl'; }
  function quantity() { return { prob: 'P(top-1)', entropy: 'entropy (nats)', kl: 'KL to final (nats)', pinned: 'P(first pinned token)' }[state.by]; }
  function isSelected(layer, position) { return !!state.cell && state.cell.layer === layer && state.cell.position === position; }
  function headRow(recs) {
    return el('tr', { role: 'row' }, [el('th', { role: 'columnheader' }, ['layer'])].concat(recs.map(function (r) {
      return el('th', { role: 'columnheader', scope: 'col', title: 'position ' + r.position }, [String(r.position), el('br'), cut(r.tokens[r.position].text, 12)]);
    })));
  }
  function gridTable(label, head, rows) {
    var table = el('table', { role: 'grid', 'aria-label': label, 'aria-rowcount': String(rows.length + 1) }, [el('thead', {}, [head]), el('tbody', {}, rows)]);
    var focusable = table.querySelector('td[aria-selected=true]') || table.querySelector('td[role=gridcell]');
    if (focusable) focusable.setAttribute('tabindex', '0');
    return table;
  }

  // One side's layer × position grid: top-1 token per cell, coloured by the chosen quantity (nats scaled by max).
  function heatmapTable(recs, label, max) {
    var last = recs[0].layers[recs[0].layers.length - 1].layer;
    var rows = shownSites(recs).map(function (s) {
      var layer = recs[0].layers[s].layer;
      return el('tr', { role: 'row' }, [el('th', { role: 'rowheader', scope: 'row' }, [label_(layer, last)])].concat(recs.map(function (r) {
        var entry = r.layers[s], value = valueOf(entry), top = entry.top[0];
        var c = color(natsScale() ? (max > 0 ? value / max : 0) : value);
        return el('td', {
          role: 'gridcell', tabindex: '-1', 'data-layer': String(layer), 'data-position': String(r.position), 'data-token-id': String(top.id),
          'aria-selected': isSelected(layer, r.position) ? 'true' : 'false', style: 'background:' + c.background + ';color:' + c.text,
          'aria-label': label_(layer, last) + ' position ' + r.position + ': ' + quote(top.token) + ' ' + (natsScale() ? nats(value) + ' nats' : percent(value)),
        }, [el('span', { class: 'tok' }, [cut(top.token, 12)]), el('br'), el('span', { class: 'val' }, [natsScale() ? nats(value) : percent(value)])]);
      })));
    });
    return gridTable(label, headRow(recs), rows);
  }

  // The comparison's difference per cell: B − A of the coloured quantity, at the same layer and position
  // (the positions both prompts have, the layers both models have); red where B is higher, blue lower.
  // Probabilities in percentage points (a tiny one as a power of ten), nats as the grid shows them.
  function signed(d) {
    var a = Math.abs(d);
    return (d > 0 ? '+' : d < 0 ? '\u2212' : '') + (natsScale() ? nats(a) : a >= 0.0005 || a === 0 ? (a * 100).toFixed(1) + ' pp' : a.toExponential(0));
  }
  function diffTable() {
    var byPosition = {};
    recordsB.forEach(function (r) { byPosition[r.position] = r; });
    var shared = records.filter(function (r) { return byPosition[r.position]; });
    var last = records[0].layers[records[0].layers.length - 1].layer;
    var cells = [], maxAbs = 0;
    var rows = shownSites(records).map(function (s) {
      var layer = records[0].layers[s].layer;
      var row = shared.map(function (r) {
        var other = byPosition[r.position].layers.filter(function (e) { return e.layer === layer && e.site === 'block'; })[0];
        var d = other ? valueOf(other) - valueOf(r.layers[s]) : null;
        if (d !== null) maxAbs = Math.max(maxAbs, Math.abs(d));
        var cell = { layer: layer, position: r.position, d: d };
        cells.push(cell);
        return cell;
      });
      return { layer: layer, row: row };
    }).filter(function (r) { return r.row.some(function (c) { return c.d !== null; }); });
    var trs = rows.map(function (r) {
      return el('tr', { role: 'row' }, [el('th', { role: 'rowheader', scope: 'row' }, [label_(r.layer, last)])].concat(r.row.map(function (c) {
        var text = c.d === null ? '\u2013' : signed(c.d);
        var alpha = c.d === null || maxAbs === 0 ? 0 : Math.abs(c.d) / maxAbs;
        var background = c.d === null ? '#eee' : c.d >= 0 ? 'rgba(214,39,40,' + alpha.toFixed(3) + ')' : 'rgba(31,119,180,' + alpha.toFixed(3) + ')';
        return el('td', {
          role: 'gridcell', tabindex: '-1', 'data-layer': String(c.layer), 'data-position': String(c.position), 'data-value': c.d === null ? '' : String(c.d),
          'aria-selected': isSelected(c.layer, c.position) ? 'true' : 'false', style: 'background:' + background + ';color:' + (alpha > 0.6 ? '#fff' : '#000'),
          'aria-label': label_(c.layer, last) + ' position ' + c.position + ': B \u2212 A ' + text,
        }, [el('span', { class: 'val' }, [text])]);
      })));
    });
    return gridTable('difference B \u2212 A of ' + quantity() + ' by layer and position', headRow(shared), trs);
  }

  function draw() {
    if (!records) return;
    var max = 0;
    if (natsScale()) [records, recordsB || []].forEach(function (recs) { recs.forEach(function (r) { shownSites(records).forEach(function (s) { if (r.layers[s]) max = Math.max(max, valueOf(r.layers[s])); }); }); });
    gridBox.replaceChildren(heatmapTable(records, (recordsB ? 'A: ' : '') + 'top-1 token by layer and position', max));
    if (state.compare && recordsB) {
      gridBoxB.replaceChildren(heatmapTable(recordsB, 'B: top-1 token by layer and position', max));
      diffBox.replaceChildren(diffTable());
      $('side-a').textContent = 'A \u00b7 ' + quote(state.prompt) + ' \u00b7 ' + state.model;
      $('side-b').textContent = 'B \u00b7 ' + quote(secondPrompt()) + ' \u00b7 ' + state.model2;
      $('side-d').textContent = 'B \u2212 A \u00b7 ' + quantity();
      comparison.hidden = false; $('side-a').hidden = false;
    } else {
      gridBoxB.replaceChildren(); diffBox.replaceChildren(); comparison.hidden = true; $('side-a').hidden = true;
    }
    showTopk();
    drawPins();
    attribute();
  }

  function recordAt(position) { return records && records.filter(function (r) { return r.position === position; })[0]; }
  function entryAt(layer, position) {
    var r = recordAt(position);
    return r && r.layers.filter(function (e) { return e.layer === layer && e.site === 'block'; })[0];
  }

  function showTopk() {
    var entry = state.cell && entryAt(state.cell.layer, state.cell.position);
    if (!entry) { topkBox.hidden = true; topkBox.replaceChildren(); return; }
    var r = recordAt(state.cell.position), last = r.layers[r.layers.length - 1].layer;
    var title = label_(entry.layer, last) + ' \u00b7 position ' + r.position + ' ' + quote(r.tokens[r.position].text);
    var rows = entry.top.map(function (t) {
      var pinned = state.pins.indexOf(t.id) >= 0;
      var pin = el('button', { type: 'button', 'data-pin': String(t.id), 'aria-label': (pinned ? 'Unpin ' : 'Pin ') + quote(t.token), 'aria-pressed': pinned ? 'true' : 'false' }, [pinned ? 'unpin' : 'pin']);
      return el('tr', { class: 'top' }, [el('td', {}, [quote(t.token)]), el('td', { class: 'num' }, [percent(t.prob)]), el('td', { class: 'num' }, ['logit ' + t.logit.toFixed(3)]), el('td', {}, [pin])]);
    });
    var targets = entry.targets.map(function (t) {
      return el('tr', { class: 'target' }, [el('td', {}, ['pinned ' + quote(t.text)]), el('td', { class: 'num' }, [percent(t.prob)]), el('td', { class: 'num' }, ['rank ' + t.rank]), el('td')]);
    });
    var parts = [el('h2', { id: 'topk-title' }, [title]), el('table', {}, rows.concat(targets))];
    var b = recordsB && state.compare && recordsB.filter(function (x) { return x.position === state.cell.position; })[0];
    var entryB = b && b.layers.filter(function (e) { return e.layer === state.cell.layer && e.site === 'block'; })[0];
    if (entryB) {
      parts.push(el('h2', { id: 'topk-title-b' }, ['B · ' + label_(entryB.layer, b.layers[b.layers.length - 1].layer) + ' · position ' + b.position + ' ' + quote(b.tokens[b.position].text)]));
      parts.push(el('table', { class: 'b', 'aria-labelledby': 'topk-title-b' }, entryB.top.map(function (t) {
        return el('tr', { class: 'top-b' }, [el('td', {}, [quote(t.token)]), el('td', { class: 'num' }, [percent(t.prob)]), el('td', { class: 'num' }, ['logit ' + t.logit.toFixed(3)])]);
      }).concat(entryB.targets.map(function (t) {
        return el('tr', { class: 'target-b' }, [el('td', {}, ['pinned ' + quote(t.text)]), el('td', { class: 'num' }, [percent(t.prob)]), el('td', { class: 'num' }, ['rank ' + t.rank])]);
      }))));
    }
    parts.push(el('p', { class: 'legend' }, ['Esc closes; arrows move between cells']));
    topkBox.replaceChildren.apply(topkBox, parts);
    topkBox.hidden = false;
  }

  function select(cell) {
    state.cell = { layer: Number(cell.dataset.layer), position: Number(cell.dataset.position) };
    // Linked: the same layer and position is selected in every grid (A, B and the difference).
    gridsBox.querySelectorAll('td[role=gridcell]').forEach(function (c) { c.setAttribute('aria-selected', isSelected(Number(c.dataset.layer), Number(c.dataset.position)) ? 'true' : 'false'); });
    writeUrl();
    showTopk();
    drawPins();
    attribute();
  }

  // The direct logit attribution at the selected cell's position (of the first pinned token, else the
  // final top-1), from /api/attribute, when the Attribution box is ticked.
  var attributing = 0;
  function attribute() {
    var mine = ++attributing;
    if (!state.attr || !state.cell || !records) { attrPanel.hidden = true; attrPanel.replaceChildren(); return; }
    var position = state.cell.position;
    fetch('/api/attribute', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: state.prompt, model: state.model, positions: [position], targets: state.pins.slice(0, 1).map(function (id) { return { id: id }; }) }),
    }).then(function (response) {
      return response.json().then(function (body) { if (!response.ok) throw new Error(body.error || 'error'); return body.records[0]; });
    }).then(function (record) {
      if (mine !== attributing) return;
      var max = 0;
      record.parts.forEach(function (p) { max = Math.max(max, Math.abs(p.value)); });
      var rows = record.parts.map(function (p) {
        var width = max > 0 ? Math.round(80 * Math.abs(p.value) / max) : 0;
        var bar = el('span', { class: 'bar', style: 'width:' + width + 'px;background:' + (p.value >= 0 ? '#d62728' : '#1f77b4') });
        var name = p.layer === null ? p.name : p.name + ' ' + p.layer + (p.head !== undefined ? '.' + p.head : '');
        return el('tr', { class: 'part', 'data-name': p.name, 'data-layer': p.layer === null ? '' : String(p.layer), 'data-value': String(p.value) }, [el('td', {}, [name]), el('td', { class: 'num' }, [p.value.toFixed(3)]), el('td', {}, [bar])]);
      });
      attrPanel.replaceChildren(
        el('h2', { id: 'attribution-title' }, ['Attribution of logit ' + quote(record.target.text) + ' at position ' + record.position + ' ' + quote(record.tokens[record.position].text) + ': ' + record.value.toFixed(3)]),
        el('table', { 'aria-labelledby': 'attribution-title' }, [el('thead', {}, [el('tr', {}, [el('th', { scope: 'col' }, ['part']), el('th', { scope: 'col' }, ['logit']), el('th', { scope: 'col' }, [''])])]), el('tbody', {}, rows)]));
      attrPanel.hidden = false;
    }).catch(function (error) { if (mine === attributing) { attrPanel.replaceChildren(el('p', { role: 'alert', class: 'error' }, [error.message || String(error)])); attrPanel.hidden = false; } });
  }

  function focusCell(cell) {
    cell.closest('table').querySelectorAll('td[tabindex="0"]').forEach(function (c) { c.setAttribute('tabindex', '-1'); });
    cell.setAttribute('tabindex', '0');
    cell.focus();
  }

  gridsBox.addEventListener('click', function (e) { var cell = e.target.closest('td[role=gridcell]'); if (cell) { focusCell(cell); select(cell); } });
  gridsBox.addEventListener('keydown', function (e) {
    var cell = e.target.closest('td[role=gridcell]');
    if (!cell) return;
    var row = cell.parentElement, rowsList = Array.prototype.slice.call(cell.closest('tbody').querySelectorAll('tr'));
    var cells = Array.prototype.slice.call(row.querySelectorAll('td')), col = cells.indexOf(cell), r = rowsList.indexOf(row), next = null;
    if (e.key === 'ArrowRight') next = cells[col + 1];
    else if (e.key === 'ArrowLeft') next = cells[col - 1];
    else if (e.key === 'ArrowDown') next = rowsList[r + 1] && rowsList[r + 1].querySelectorAll('td')[col];
    else if (e.key === 'ArrowUp') next = rowsList[r - 1] && rowsList[r - 1].querySelectorAll('td')[col];
    else if (e.key === 'Home') next = cells[0];
    else if (e.key === 'End') next = cells[cells.length - 1];
    else if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(cell); return; }
    else return;
    e.preventDefault();
    if (next) focusCell(next);
  });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && !topkBox.hidden) {
      state.cell = null; writeUrl(); showTopk(); drawPins(); attribute();
      var focused = gridsBox.querySelector('td[tabindex="0"]');
      if (focused) focused.focus();
    }
  });
  topkBox.addEventListener('click', function (e) {
    var button = e.target.closest('button[data-pin]');
    if (!button) return;
    var id = Number(button.dataset.pin), at = state.pins.indexOf(id);
    if (at >= 0) state.pins.splice(at, 1); else state.pins.push(id);
    writeUrl();
    run();
  });
  pinList.addEventListener('click', function (e) {
    var button = e.target.closest('button[data-unpin]');
    if (!button) return;
    state.pins = state.pins.filter(function (id) { return id !== Number(button.dataset.unpin); });
    writeUrl();
    run();
  });

  // Pinned tokens' probability and rank by layer, at the selected cell's position (else the last).
  function drawPins() {
    pinList.replaceChildren.apply(pinList, state.pins.map(function (id) {
      return el('li', {}, [quote(pinTexts[id] !== undefined ? pinTexts[id] : '#' + id), el('button', { type: 'button', 'data-unpin': String(id), 'aria-label': 'Unpin ' + quote(pinTexts[id] || '#' + id) }, ['\u00d7'])]);
    }));
    if (!records || state.pins.length === 0 || !records[0].layers[0].targets.length) { chartBox.replaceChildren(); return; }
    var r = (state.cell && recordAt(state.cell.position)) || records[records.length - 1];
    var entries = r.layers.filter(function (e) { return e.site === 'block'; });
    var last = entries[entries.length - 1].layer;
    var caption = el('p', { class: 'legend' }, ['at position ' + r.position + ' ' + quote(r.tokens[r.position].text) + ': ']);
    r.layers[0].targets.forEach(function (t, i) {
      caption.append(el('span', { style: 'color:' + colors[i % colors.length] }, ['\u2014 ' + quote(t.text) + ' ']));
    });
    chartBox.replaceChildren(caption, el('div', { class: 'charts' }, [
      lineChart('probability', entries, function (e, i) { return e.targets[i].prob; }, false, last),
      lineChart('rank (log scale)', entries, function (e, i) { return e.targets[i].rank; }, true, last),
    ]));
  }
  function lineChart(title, entries, value, logRank, last) {
    var W = 360, H = 200, L = 48, R = 10, T = 22, B = 30;
    var count = entries[0].targets.length;
    var maxRank = 1;
    if (logRank) entries.forEach(function (e) { for (var i = 0; i < count; i++) maxRank = Math.max(maxRank, value(e, i)); });
    var y = function (v) { return logRank ? T + (H - T - B) * (maxRank > 1 ? Math.log(v) / Math.log(maxRank) : 0) : T + (H - T - B) * (1 - v); };
    var x = function (layer) { return L + (W - L - R) * (last > 0 ? layer / last : 0); };
    var parts = [svg('text', { x: String(L), y: '14', 'font-size': '12' }, [title])];
    parts.push(svg('line', { x1: String(L), y1: String(H - B), x2: String(W - R), y2: String(H - B), stroke: '#888' }));
    parts.push(svg('line', { x1: String(L), y1: String(T), x2: String(L), y2: String(H - B), stroke: '#888' }));
    var ticks = logRank ? [1, maxRank] : [0, 0.5, 1];
    ticks.forEach(function (v) { parts.push(svg('text', { x: String(L - 4), y: String(y(v) + 4), 'font-size': '10', 'text-anchor': 'end' }, [logRank ? String(v) : percent(v)])); });
    [0, last].forEach(function (layer) { parts.push(svg('text', { x: String(x(layer)), y: String(H - B + 14), 'font-size': '10', 'text-anchor': 'middle' }, [String(layer)])); });
    parts.push(svg('text', { x: String((L + W - R) / 2), y: String(H - 4), 'font-size': '10', 'text-anchor': 'middle' }, ['layer']));
    for (var i = 0; i < count; i++) {
      var points = entries.map(function (e) { return x(e.layer).toFixed(1) + ',' + y(value(e, i)).toFixed(1); }).join(' ');
      parts.push(svg('polyline', { points: points, fill: 'none', stroke: colors[i % colors.length], 'stroke-width': '2', 'data-series': String(i) }));
    }
    return svg('svg', { width: String(W), height: String(H), viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': title + ' of the pinned tokens by layer' }, parts);
  }

  // The grids on screen as one standalone SVG (A, and when comparing B and the difference, stacked):
  // each cell a rect of its colour with its texts, read off the tables so the file shows what the page does.
  function exportSvg() {
    var tables = Array.prototype.slice.call(gridsBox.querySelectorAll('table[role=grid]'));
    if (!tables.length) return;
    var CW = 84, CH = 32, HEAD = 34, LEFT = 44, GAP = 24, TITLE = 18, y = 0, width = 0;
    var parts = [];
    tables.forEach(function (table, g) {
      var heads = Array.prototype.slice.call(table.querySelectorAll('thead th')).slice(1);
      var rows = Array.prototype.slice.call(table.querySelectorAll('tbody tr'));
      var group = [svg('text', { x: '0', y: String(y + 13), 'font-size': '13', 'font-weight': 'bold' }, [table.getAttribute('aria-label')])];
      var top = y + TITLE;
      heads.forEach(function (th, c) {
        var x = LEFT + c * CW + CW / 2;
        group.push(svg('text', { x: String(x), y: String(top + 13), 'font-size': '11', 'text-anchor': 'middle' }, [th.childNodes[0].textContent]));
        group.push(svg('text', { x: String(x), y: String(top + 27), 'font-size': '11', 'text-anchor': 'middle' }, [th.childNodes[2] ? th.childNodes[2].textContent : '']));
      });
      rows.forEach(function (tr, r) {
        var ry = top + HEAD + r * CH;
        group.push(svg('text', { x: String(LEFT - 4), y: String(ry + CH / 2 + 4), 'font-size': '11', 'text-anchor': 'end' }, [tr.querySelector('th').textContent]));
        Array.prototype.slice.call(tr.querySelectorAll('td')).forEach(function (td, c) {
          var x = LEFT + c * CW, tok = td.querySelector('.tok'), val = td.querySelector('.val');
          var cell = [svg('rect', { x: String(x), y: String(ry), width: String(CW), height: String(CH), fill: td.style.backgroundColor, stroke: '#fff' })];
          if (tok) cell.push(svg('text', { x: String(x + CW / 2), y: String(ry + 13), 'font-size': '11', 'text-anchor': 'middle', fill: td.style.color, class: 'tok' }, [tok.textContent]));
          if (val) cell.push(svg('text', { x: String(x + CW / 2), y: String(ry + (tok ? 27 : 20)), 'font-size': '10', 'text-anchor': 'middle', fill: td.style.color, class: 'val' }, [val.textContent]));
          group.push(svg('g', { class: 'cell', 'data-layer': td.dataset.layer, 'data-position': td.dataset.position }, cell));
        });
      });
      parts.push(svg('g', { class: 'grid', 'data-grid': String(g) }, group));
      width = Math.max(width, LEFT + heads.length * CW);
      y = top + HEAD + rows.length * CH + GAP;
    });
    var root = svg('svg', { xmlns: 'http://www.w3.org/2000/svg', width: String(width), height: String(y - GAP), viewBox: '0 0 ' + width + ' ' + (y - GAP), 'font-family': 'DejaVu Sans Mono, Menlo, Consolas, monospace' }, parts);
    var text = '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(root);
    var url = URL.createObjectURL(new Blob([text], { type: 'image/svg+xml' }));
    var link = el('a', { href: url, download: 'lens-heatmap.svg' });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 0);
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    var changed = promptBox.value !== state.prompt || modelBox.value !== state.model || Number(kBox.value) !== state.k;
    state.prompt = promptBox.value; state.model = modelBox.value;
    state.compare = compareBox.checked; state.prompt2 = prompt2Box.value; state.model2 = model2Box.value;
    state.k = Math.min(50, Math.max(1, Math.floor(Number(kBox.value)) || 10));
    if (changed) state.cell = null;
    writeUrl();
    run();
  });
  compareBox.addEventListener('change', function () { form.requestSubmit(); });
  prompt2Box.addEventListener('keydown', function (e) { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
  exportButton.addEventListener('click', exportSvg);
  lensBox.addEventListener('change', function () { state.lens = lensBox.value; writeUrl(); run(); });
  attrBox.addEventListener('change', function () { state.attr = attrBox.checked; writeUrl(); attribute(); });
  if (anyTuned) $('lens-field').hidden = false;
  promptBox.addEventListener('keydown', function (e) { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
  byBox.addEventListener('change', function () { state.by = byBox.value; writeUrl(); draw(); });
  strideBox.addEventListener('change', function () { state.stride = Math.max(1, Math.floor(Number(strideBox.value)) || 1); strideBox.value = state.stride; writeUrl(); draw(); });

  readUrl();
  run();
})();
`;

/** The page for the models served; `nonce` is the one its Content-Security-Policy allows the inline script under. */
export function renderLivePage(options: { models: LiveModel[]; nonce: string }): string {
  const config = { models: options.models, ramp: rampStops(), colors: SVG_SERIES_COLORS };
  // JSON inside a script: "<" escaped so no model name can end the script element.
  const configJson = JSON.stringify(config).replace(/</g, '\\u003c');
  const modelOptions = options.models.map((m) => `<option value="${xmlEscape(m.model)}">${xmlEscape(m.model)} (${m.layers} layers)</option>`).join('');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lens serve</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<h1>lens</h1>
<form id="run-form">
<div class="field"><label for="prompt">Prompt</label><textarea id="prompt" name="prompt" rows="2" placeholder="Paris is capital of"></textarea></div>
<div class="field"><label for="model">Model</label><select id="model" name="model">${modelOptions}</select></div>
<div class="field"><label for="by">Colour by</label><select id="by" name="by"><option value="prob">P(top-1)</option><option value="entropy">entropy (nats)</option><option value="kl">KL to final (nats)</option><option value="pinned">P(first pinned token)</option></select></div>
<div class="field"><label for="stride">Layer stride</label><input id="stride" name="stride" type="number" min="1" value="1"></div>
<div class="field"><label for="k">Top-k</label><input id="k" name="k" type="number" min="1" max="50" value="10"></div>
<div class="field"><label><input id="compare" name="compare" type="checkbox"> Compare</label></div>
<div class="field"><label for="prompt2">Second prompt (empty: the same)</label><textarea id="prompt2" name="prompt2" rows="1"></textarea></div>
<div class="field"><label for="model2">Second model</label><select id="model2" name="model2">${modelOptions}</select></div>
<div class="field" id="lens-field" hidden><label for="lens">Lens</label><select id="lens" name="lens"><option value="tuned">tuned lens</option><option value="logit">logit lens</option></select></div>
<div class="field"><label><input id="attr" name="attr" type="checkbox"> Attribution</label></div>
<button type="submit">Run</button>
<button type="button" id="export-svg">Export SVG</button>
</form>
<p id="status" role="status" aria-live="polite"></p>
<div id="grids" class="grids">
<section class="side" aria-label="First side"><h2 id="side-a" hidden></h2><div id="heatmap" class="scroll"></div></section>
<div id="comparison" class="comparison" hidden>
<section class="side" aria-labelledby="side-b"><h2 id="side-b"></h2><div id="heatmap-b" class="scroll"></div></section>
<section class="side" aria-labelledby="side-d"><h2 id="side-d"></h2><div id="diff" class="scroll"></div></section>
</div>
</div>
<div id="topk" role="dialog" aria-labelledby="topk-title" hidden></div>
<section id="attribution" aria-label="Attribution of the selected position" hidden></section>
<section id="pins" aria-label="Pinned tokens"><h2>Pinned tokens</h2><ul id="pin-list"></ul><div id="pin-chart"></div></section>
<script nonce="${xmlEscape(options.nonce)}">var CONFIG = ${configJson};${SCRIPT}</script>
</body>
</html>
`;
}
