/* The ml-dash dashboard page: plain JavaScript over the JSON API of `ml-dash serve`. */
(function () {
  'use strict';

  var TOKEN = new URLSearchParams(location.search).get('token');
  var TABS = ['readme', 'dashboard', 'logs', 'params', 'files'];
  var TAB_NAMES = { readme: 'README', dashboard: 'Dashboard', logs: 'Logs', params: 'Parameters', files: 'Files', compare: 'Compare', folder: 'Folder .dashrc' };
  var COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

  var state = {
    run: null, tab: 'dashboard', checked: [], q: '', expr: '', smooth: 0, x: 'index', log: false,
    group: '', folder: '', sort: 'prefix', desc: false
  };
  var runs = [];
  var runsSignature = '';
  var rowCache = {};        // prefix -> {sig, tr} of the rows on screen
  var current = null;       // /api/run answer of the selected run
  var charts = [];          // Chart objects on screen
  var observer = null;
  var livePoll = null;
  var runsPoll = null;
  var viewSerial = 0;       // bumped whenever the main view is rebuilt
  var folderDashrc = null;  // {folder, parsed} of the selected folder's comparison .dashrc

  // -- helpers ------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') node.textContent = attrs[k];
        else if (k === 'cls') node.className = attrs[k];
        else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), attrs[k]);
        else if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
      });
    }
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return node;
  }

  function url(path, params) {
    var search = new URLSearchParams();
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== null && params[k] !== undefined) search.set(k, params[k]);
    });
    if (TOKEN) search.set('token', TOKEN);
    var s = search.toString();
    return path + (s ? '?' + s : '');
  }

  function api(path, params, options) {
    return fetch(url(path, params), options).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body && body.error ? body.error : 'HTTP ' + response.status);
        return body;
      });
    });
  }

  function fmt(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'number') {
      if (Number.isInteger(v)) return String(v);
      var a = Math.abs(v);
      return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
    }
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function fmtTime(iso) {
    if (!iso) return '';
    var d = new Date(iso);
    if (isNaN(d)) return iso;
    var p = function (n) { return (n < 10 ? '0' : '') + n; };
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function fmtSize(n) {
    if (n === null || n === undefined) return '';
    var units = ['B', 'kB', 'MB', 'GB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + units[i];
  }

  function streamLabel(name) { return name === null || name === undefined || name === '' ? '(root)' : name; }

  // -- URL state -----------------------------------------------------------------

  function writeHash() {
    var h = new URLSearchParams();
    if (state.run) h.set('run', state.run);
    if (state.tab !== 'dashboard') h.set('tab', state.tab);
    if (state.checked.length) h.set('checked', state.checked.join(','));
    if (state.q) h.set('q', state.q);
    if (state.expr) h.set('expr', state.expr);
    if (state.smooth) h.set('smooth', state.smooth);
    if (state.x !== 'index') h.set('x', state.x);
    if (state.log) h.set('log', '1');
    if (state.group) h.set('group', state.group);
    if (state.folder) h.set('folder', state.folder);
    if (state.sort !== 'prefix' || state.desc) h.set('sort', (state.desc ? '-' : '') + state.sort);
    var text = h.toString();
    if (('#' + text) !== location.hash && !(text === '' && location.hash === '')) {
      history.replaceState(null, '', location.pathname + location.search + (text ? '#' + text : ''));
    }
  }

  function readHash() {
    var h = new URLSearchParams(location.hash.replace(/^#/, ''));
    state.run = h.get('run') || null;
    state.tab = h.get('tab') || 'dashboard';
    state.checked = (h.get('checked') || '').split(',').filter(Boolean);
    state.q = h.get('q') || '';
    state.expr = h.get('expr') || '';
    state.smooth = Math.min(0.99, Math.max(0, parseFloat(h.get('smooth')) || 0));
    state.x = h.get('x') || 'index';
    state.log = h.get('log') === '1';
    state.group = h.get('group') || '';
    state.folder = h.get('folder') || '';
    var sort = h.get('sort') || 'prefix';
    state.desc = sort.charAt(0) === '-';
    state.sort = state.desc ? sort.slice(1) : sort;
  }

  // -- the expression filter: a tiny grammar, no eval() ------------------------------
  //   expr := and ('||' and)* ; and := unary ('&&' unary)* ;
  //   unary := '!' unary | '(' expr ')' | operand (op operand)? ; op := < <= > >= == !=

  function tokenize(text) {
    var tokens = [];
    var i = 0;
    var re = {
      space: /^\s+/, num: /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?/, op: /^(<=|>=|==|!=|&&|\|\||<|>|!|\(|\)|=)/,
      ident: /^[A-Za-z_][\w.\/\-]*/
    };
    while (i < text.length) {
      var rest = text.slice(i);
      var m;
      if ((m = re.space.exec(rest))) { i += m[0].length; continue; }
      var c = rest.charAt(0);
      if (c === '"' || c === "'") {
        var j = 1, s = '';
        while (j < rest.length && rest.charAt(j) !== c) {
          if (rest.charAt(j) === '\\' && j + 1 < rest.length) j++;
          s += rest.charAt(j); j++;
        }
        if (j >= rest.length) throw new Error('unterminated string');
        tokens.push({ t: 'str', v: s }); i += j + 1; continue;
      }
      if ((m = re.num.exec(rest)) && !(/[A-Za-z_]/.test(rest.charAt(m[0].length)))) {
        tokens.push({ t: 'num', v: parseFloat(m[0]) }); i += m[0].length; continue;
      }
      if ((m = re.op.exec(rest))) { tokens.push({ t: 'op', v: m[0] === '=' ? '==' : m[0] }); i += m[0].length; continue; }
      if ((m = re.ident.exec(rest))) {
        var v = m[0];
        if (v === 'true' || v === 'false') tokens.push({ t: 'bool', v: v === 'true' });
        else if (v === 'and' || v === 'or' || v === 'not') tokens.push({ t: 'op', v: v === 'and' ? '&&' : v === 'or' ? '||' : '!' });
        else tokens.push({ t: 'id', v: v });
        i += v.length; continue;
      }
      throw new Error('unexpected ' + JSON.stringify(c) + ' at ' + (i + 1));
    }
    return tokens;
  }

  function parseExpr(text) {
    var tokens = tokenize(text);
    var pos = 0;
    function peek() { return tokens[pos]; }
    function isOp(v) { var t = tokens[pos]; return t && t.t === 'op' && t.v === v; }
    function orExpr() {
      var left = andExpr();
      while (isOp('||')) { pos++; var l = left, r = andExpr(); left = (function (a, b) { return function (row) { return a(row) || b(row); }; })(l, r); }
      return left;
    }
    function andExpr() {
      var left = unary();
      while (isOp('&&')) { pos++; var l = left, r = unary(); left = (function (a, b) { return function (row) { return a(row) && b(row); }; })(l, r); }
      return left;
    }
    function operand() {
      var t = tokens[pos++];
      if (!t) throw new Error('expression ends too soon');
      if (t.t === 'num' || t.t === 'str' || t.t === 'bool') return function () { return t.v; };
      if (t.t === 'id') return function (row) { return lookup(row, t.v); };
      throw new Error('unexpected ' + t.v);
    }
    function unary() {
      if (isOp('!')) { pos++; var inner = unary(); return function (row) { return !inner(row); }; }
      if (isOp('(')) {
        pos++;
        var e = orExpr();
        if (!isOp(')')) throw new Error('missing )');
        pos++;
        return e;
      }
      var left = operand();
      var t = peek();
      if (t && t.t === 'op' && ['<', '<=', '>', '>=', '==', '!='].indexOf(t.v) >= 0) {
        pos++;
        var right = operand();
        return compare(left, t.v, right);
      }
      return function (row) { var v = left(row); return v !== undefined && v !== null && v !== false && v !== 0 && v !== ''; };
    }
    var f = orExpr();
    if (pos < tokens.length) throw new Error('unexpected ' + tokens[pos].v);
    return f;
  }

  function compare(left, op, right) {
    return function (row) {
      var a = left(row), b = right(row);
      if (a === undefined || b === undefined || a === null || b === null) return op === '!=' ? a !== b : false;
      if (typeof a === 'number' || typeof b === 'number') {
        var na = typeof a === 'boolean' ? +a : Number(a), nb = typeof b === 'boolean' ? +b : Number(b);
        if (!isNaN(na) && !isNaN(nb)) { a = na; b = nb; } else { a = String(a); b = String(b); }
      } else if (typeof a !== typeof b) { a = String(a); b = String(b); }
      switch (op) {
        case '<': return a < b;
        case '<=': return a <= b;
        case '>': return a > b;
        case '>=': return a >= b;
        case '==': return a === b;
        default: return a !== b;
      }
    };
  }

  function lookup(row, name) {
    var builtin = { status: row.status, name: row.name, prefix: row.prefix, folder: row.folder, points: row.points,
      stale: row.stale, live: row.live, description: row.description };
    // own properties only: 'constructor' or '__proto__' name nothing here
    var own = function (obj, key) { return obj && Object.prototype.hasOwnProperty.call(obj, key); };
    if (own(builtin, name)) return builtin[name];
    if (own(row.params, name)) return row.params[name];
    if (own(row.last, name)) return row.last[name];
    if (name.indexOf('params.') === 0 && own(row.params, name.slice(7))) return row.params[name.slice(7)];
    if (name.indexOf('last.') === 0 && own(row.last, name.slice(5))) return row.last[name.slice(5)];
    return undefined;
  }

  // -- runs table --------------------------------------------------------------------

  function paramKeys() {
    var keys = {};
    runs.forEach(function (r) { Object.keys(r.params || {}).forEach(function (k) { keys[k] = true; }); });
    return Object.keys(keys).sort();
  }

  function visibleRuns() {
    var pred = null;
    $('expr-error').textContent = '';
    if (state.expr.trim()) {
      try { pred = parseExpr(state.expr); } catch (e) { $('expr-error').textContent = 'expression: ' + e.message; }
    }
    var q = state.q.toLowerCase();
    var rows = runs.filter(function (r) {
      if (state.folder && !(r.folder === state.folder || r.folder.indexOf(state.folder + '/') === 0)) return false;
      if (q) {
        var hay = [r.prefix, r.status, r.description || '', (r.tags || []).join(' ')].concat(
          Object.keys(r.params || {}).map(function (k) { return k + '=' + fmt(r.params[k]); })).join(' ').toLowerCase();
        if (hay.indexOf(q) < 0) return false;
      }
      if (pred) { try { return !!pred(r); } catch (e) { return false; } }
      return true;
    });
    var key = state.sort;
    var get = function (r) {
      if (key === 'prefix' || key === 'status' || key === 'points' || key === 'startedAt') return r[key];
      return lookup(r, key);
    };
    rows.sort(function (a, b) {
      if (state.group) {
        var ga = fmt(lookup(a, state.group)), gb = fmt(lookup(b, state.group));
        if (ga !== gb) return ga < gb ? -1 : 1;
      }
      var x = get(a), y = get(b);
      var c;
      if (x === undefined || x === null) c = (y === undefined || y === null) ? 0 : 1;
      else if (y === undefined || y === null) c = -1;
      else if (typeof x === 'number' && typeof y === 'number') c = x - y;
      else c = String(x) < String(y) ? -1 : String(x) > String(y) ? 1 : 0;
      if (c === 0) c = a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0;
      return state.desc ? -c : c;
    });
    return rows;
  }

  function renderFolders() {
    var counts = {};
    runs.forEach(function (r) {
      var parts = r.folder ? r.folder.split('/') : [];
      for (var i = 1; i <= parts.length; i++) {
        var f = parts.slice(0, i).join('/');
        counts[f] = (counts[f] || 0) + 1;
      }
    });
    var box = $('folders');
    box.innerHTML = '';
    box.appendChild(el('div', { cls: 'folder' + (state.folder ? '' : ' active'), 'data-folder': '',
      onclick: function () { setFolder(''); } }, ['all runs', el('span', { cls: 'count', text: String(runs.length) })]));
    Object.keys(counts).sort().forEach(function (f) {
      var depth = f.split('/').length;
      box.appendChild(el('div', { cls: 'folder' + (state.folder === f ? ' active' : ''), 'data-folder': f,
        style: 'padding-left:' + (4 + 14 * depth) + 'px', onclick: function () { setFolder(f); } },
      ['\u25B8 ' + f.split('/').pop(), el('span', { cls: 'count', text: String(counts[f]) })]));
    });
  }

  function setFolder(f) {
    state.folder = f;
    writeHash(); renderFolders(); renderRuns();
    loadFolderDashrc().then(function () {
      if (folderDashrc) setTab('folder');
      else if (state.tab === 'folder') setTab('dashboard');
      else renderTabs();
    });
  }

  function loadFolderDashrc() {
    folderDashrc = null;
    if (!state.folder) return Promise.resolve();
    var folder = state.folder;
    return api('/api/dashrc', { folder: folder }).then(function (body) {
      var charts = body.parsed && body.parsed.charts;
      if (folder === state.folder && charts && charts.some(function (c) { return c.series && c.series.length; })) {
        folderDashrc = { folder: folder, parsed: body.parsed };
      }
    }).catch(function () { folderDashrc = null; });
  }

  function renderRuns() {
    var keys = paramKeys();
    var cols = [
      { id: 'check', label: '' }, { id: 'prefix', label: 'run' }, { id: 'status', label: 'status' },
      { id: 'startedAt', label: 'started' }, { id: 'points', label: 'points' }
    ].concat(keys.map(function (k) { return { id: k, label: k, param: true }; }));
    var head = el('tr', null, cols.map(function (c) {
      if (c.id === 'check') return el('th', { title: 'compare' }, ['\u2713']);
      return el('th', { cls: state.sort === c.id ? 'sorted' + (state.desc ? ' desc' : '') : '', 'data-col': c.id,
        onclick: function () {
          if (state.sort === c.id) state.desc = !state.desc; else { state.sort = c.id; state.desc = false; }
          writeHash(); renderRuns();
        } }, [c.label]);
    }));
    var thead = $('runs').tHead;
    var headSig = JSON.stringify([keys, state.sort, state.desc]);
    if (thead.getAttribute('data-sig') !== headSig) {
      thead.innerHTML = '';
      thead.appendChild(head);
      thead.setAttribute('data-sig', headSig);
    }
    var body = $('runs').tBodies[0];
    // rows whose content did not change are kept (moved, not rebuilt): a refresh of the
    // table every 2 s must not swap the element under a pointer or a check box
    var old = rowCache;
    rowCache = {};
    body.innerHTML = '';
    var rows = visibleRuns();
    var keySig = keys.join('\u0000');
    var lastGroup = null;
    rows.forEach(function (r) {
      if (state.group) {
        var g = fmt(lookup(r, state.group));
        if (g !== lastGroup) {
          lastGroup = g;
          body.appendChild(el('tr', { cls: 'group' }, [el('td', { colspan: cols.length, text: state.group + ' = ' + (g || '(none)') })]));
        }
      }
      var sig = JSON.stringify([r, keySig, r.prefix === state.run, state.checked.indexOf(r.prefix) >= 0]);
      if (old[r.prefix] && old[r.prefix].sig === sig) {
        rowCache[r.prefix] = old[r.prefix];
        body.appendChild(old[r.prefix].tr);
        return;
      }
      var box = el('input', { type: 'checkbox', cls: 'check', 'data-prefix': r.prefix, onclick: function (ev) { ev.stopPropagation(); } });
      box.checked = state.checked.indexOf(r.prefix) >= 0;
      box.addEventListener('change', function () { toggleChecked(r.prefix, box.checked); });
      var status = el('td', null, [el('span', { cls: 'status ' + r.status, text: r.status || '?' })]);
      if (r.stale) status.appendChild(el('span', { cls: 'badge-stale', text: 'stale', title: 'RUNNING, but its writer is gone' }));
      var cells = [el('td', null, [box]), el('td', { title: r.description || r.prefix, text: r.prefix }), status,
        el('td', { text: fmtTime(r.startedAt || r.createdAt) }), el('td', { cls: 'num', text: String(r.points) })];
      keys.forEach(function (k) {
        var v = (r.params || {})[k];
        cells.push(el('td', { cls: typeof v === 'number' ? 'num' : '', text: fmt(v) }));
      });
      var tr = el('tr', { cls: 'run' + (r.prefix === state.run ? ' selected' : ''), 'data-prefix': r.prefix,
        'data-status': r.status, onclick: function () { selectRun(r.prefix); } }, cells);
      body.appendChild(tr);
      rowCache[r.prefix] = { sig: sig, tr: tr };
    });
    $('runs-count').textContent = rows.length + ' of ' + runs.length + ' runs' + (state.checked.length ? ', ' + state.checked.length + ' checked' : '');
  }

  function renderGroupSelect() {
    var sel = $('groupby');
    var keys = paramKeys();
    var have = Array.prototype.map.call(sel.options, function (o) { return o.value; }).slice(1).join('\n');
    if (have !== keys.join('\n')) {
      sel.innerHTML = '';
      sel.appendChild(el('option', { value: '' }, ['(none)']));
      keys.forEach(function (k) { sel.appendChild(el('option', { value: k }, [k])); });
    }
    sel.value = state.group;
  }

  function loadRuns() {
    return api('/api/runs').then(function (body) {
      $('root').textContent = body.root;
      var sig = JSON.stringify(body.runs);
      if (sig === runsSignature) return false;
      runsSignature = sig;
      runs = body.runs;
      renderGroupSelect();
      renderFolders();
      renderRuns();
      return true;
    });
  }

  function scheduleRunsPoll() {
    if (runsPoll) clearTimeout(runsPoll);
    var anyLive = runs.some(function (r) { return r.live; });
    runsPoll = setTimeout(function () {
      loadRuns().then(function (changed) {
        if (changed && current && state.tab !== 'compare') {
          var info = runs.filter(function (r) { return r.prefix === current.info.prefix; })[0];
          if (info && (info.live !== current.info.live || info.status !== current.info.status)) {
            current.info = info;
            renderRunHead();
            if (!info.live) stopLive();
            else startLive();
          }
        }
      }).catch(function () {}).then(scheduleRunsPoll);
    }, anyLive ? 2000 : 10000);
  }

  function toggleChecked(prefix, on) {
    var i = state.checked.indexOf(prefix);
    if (on && i < 0) state.checked.push(prefix);
    if (!on && i >= 0) state.checked.splice(i, 1);
    if (state.checked.length >= 2 && on) state.tab = 'compare';
    if (state.checked.length < 2 && state.tab === 'compare') state.tab = 'dashboard';
    writeHash();
    renderRuns();
    renderTabs();
    renderView();
  }

  // -- the selected run ------------------------------------------------------------

  function selectRun(prefix, keepTab) {
    state.run = prefix;
    if (!keepTab && (state.tab === 'compare' || state.tab === 'folder')) state.tab = 'dashboard';
    writeHash();
    renderRuns();
    var serial = ++viewSerial;
    return api('/api/run', { prefix: prefix }).then(function (body) {
      if (serial !== viewSerial) return;
      current = body;
      renderRunHead();
      renderTabs();
      renderView();
    }).catch(function (e) {
      current = null;
      $('run-head').innerHTML = '';
      $('view').innerHTML = '';
      $('view').appendChild(el('p', { cls: 'error', text: String(e.message) }));
    });
  }

  function renderRunHead() {
    var head = $('run-head');
    head.innerHTML = '';
    if (state.tab === 'compare') {
      head.appendChild(el('h2', { text: 'Compare ' + state.checked.length + ' runs' }));
      return;
    }
    if (state.tab === 'folder' && folderDashrc) {
      head.appendChild(el('h2', { text: folderDashrc.folder + '/.dashrc' }));
      return;
    }
    if (!current) return;
    var info = current.info;
    var h = el('h2', null, [info.prefix + ' ', el('span', { cls: 'status ' + info.status, text: info.status })]);
    if (info.stale) h.appendChild(el('span', { cls: 'badge-stale', text: 'stale' }));
    if (info.live) h.appendChild(el('span', { cls: 'status RUNNING', text: 'live', style: 'margin-left:4px' }));
    head.appendChild(h);
    head.appendChild(el('div', { cls: 'meta', text: [
      'started ' + fmtTime(info.startedAt || info.createdAt), info.endedAt ? 'ended ' + fmtTime(info.endedAt) : '',
      info.points + ' points', info.description || '', (info.tags || []).length ? 'tags: ' + info.tags.join(', ') : '',
      gitText(current.context)
    ].filter(Boolean).join(' \u00b7 ') }));
    if (current.error) {
      head.appendChild(el('div', { cls: 'meta', title: current.error.traceback || '',
        text: 'error: ' + current.error.type + ': ' + current.error.message }));
    }
  }

  // "git 3f2a9c1d07be+dirty (main)": the run context's commit, as ml-dash show prints it.
  function gitText(context) {
    var git = context && context.git;
    if (!git || !git.commit) return '';
    return 'git ' + git.commit.slice(0, 12) + (git.dirty ? '+dirty' : '') + (git.branch ? ' (' + git.branch + ')' : '');
  }

  function renderTabs() {
    var bar = $('tabs');
    bar.innerHTML = '';
    var list = TABS.slice();
    if (state.checked.length >= 2) list.push('compare');
    if (folderDashrc) list.push('folder');
    list.forEach(function (t, i) {
      bar.appendChild(el('button', { cls: state.tab === t ? 'active' : '', 'data-tab': t, onclick: function () { setTab(t); } },
        [TAB_NAMES[t], i < 5 ? el('kbd', { text: String(i + 1) }) : null]));
    });
  }

  function setTab(t) {
    if (t === 'compare' && state.checked.length < 2) return;
    if (t === 'folder' && !folderDashrc) return;
    state.tab = t;
    writeHash();
    renderRunHead();
    renderTabs();
    renderView();
  }

  function clearCharts() {
    stopLive();
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    if (observer) observer.disconnect();
    observer = null;
  }

  function renderView() {
    clearCharts();
    viewSerial++;
    var view = $('view');
    view.innerHTML = '';
    renderRunHead();
    if (state.tab === 'compare') { renderCompare(view); return; }
    if (state.tab === 'folder' && folderDashrc) { renderFolderDashrc(view); return; }
    if (!current) { view.appendChild(el('p', { cls: 'muted', text: 'Select a run on the left.' })); return; }
    ({ readme: renderReadme, dashboard: renderDashboard, logs: renderLogs, params: renderParams, files: renderFiles }[state.tab] || renderDashboard)(view);
  }

  function renderReadme(view) {
    if (!current.readme) { view.appendChild(el('p', { cls: 'muted', text: 'This run has no README.md file.' })); return; }
    view.appendChild(el('div', { cls: 'panel' }, [el('pre', { cls: 'readme', text: current.readme })]));
  }

  function chartSpecs() {
    var dashrc = current.dashrc;
    if (dashrc && dashrc.charts && dashrc.charts.length) {
      return dashrc.charts.map(function (c) {
        var xKey = c.xKey && typeof c.xKey === 'object' ? c.xKey['default'] : c.xKey;
        return { stream: c.stream || null, keys: c.yKeys || (c.yKey ? [c.yKey] : []), title: c.title, xKey: xKey || null,
          xLabel: c.xLabel, yLabel: c.yLabel, bins: c.bins };
      }).filter(function (s) { return s.keys.length; });
    }
    // the longest streams first; within a stream, the step and epoch counters last
    var specs = [];
    var streams = current.streams.filter(function (s) { return s.count; }).sort(function (a, b) { return b.count - a.count; });
    var counter = function (k) { return k === 'step' || k === 'epoch' || k === 'iteration' ? 1 : 0; };
    streams.forEach(function (s) {
      s.keys.filter(function (k) { return k !== '_ts'; }).sort(function (a, b) { return counter(a) - counter(b); })
        .forEach(function (k) { specs.push({ stream: s.name, keys: [k] }); });
    });
    return specs;
  }

  function renderDashboard(view) {
    var specs = chartSpecs();
    var msg = el('span', { cls: 'muted' });
    var save = el('button', { text: 'Save as .dashrc', title: 'write these charts into ' + current.info.prefix + '/.dashrc',
      onclick: function () {
        var content = toYaml({ charts: charts.map(function (c) {
          var out = { ctype: 'line', title: c.title, stream: c.stream === null ? undefined : c.stream, yKeys: c.keys };
          if (state.x !== 'index') out.xKey = state.x === '_ts_rel' ? '_ts' : state.x;
          return out;
        }) });
        msg.textContent = 'saving\u2026';
        api('/api/dashrc', null, { method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ folder: current.info.prefix, content: content }) })
          .then(function (r) { msg.textContent = 'saved ' + r.path; current.dashrc = r.parsed; })
          .catch(function (e) { msg.textContent = 'not saved: ' + e.message; });
      } });
    view.appendChild(el('div', { cls: 'toolbar' }, [el('span', { cls: 'muted', text: specs.length + ' charts' + (current.dashrc ? ' (from .dashrc)' : '') }), save, msg]));
    var grid = el('div', { cls: 'charts' });
    view.appendChild(grid);
    if (!specs.length) { grid.appendChild(el('p', { cls: 'muted', text: 'No numeric columns yet.' })); }
    var streamInfo = {};
    current.streams.forEach(function (s) { streamInfo[s.name === null ? '' : s.name] = s; });
    specs.forEach(function (spec) {
      var info = streamInfo[spec.stream || ''] || { keys: [] };
      var c = new Chart(grid, { prefix: current.info.prefix, stream: spec.stream, keys: spec.keys, title: spec.title,
        xKey: spec.xKey, columns: info.keys, bins: spec.bins, live: current.info.live });
      charts.push(c);
    });
    observeCharts();
    if (current.info.live) startLive();
  }

  function toYaml(value, indent) {
    indent = indent || '';
    var q = function (s) { return JSON.stringify(String(s)); };
    if (Array.isArray(value)) {
      if (!value.length) return '[]';
      return value.map(function (v) {
        if (v && typeof v === 'object' && !Array.isArray(v)) {
          var body = toYaml(v, indent + '  ');
          return indent + '- ' + body.replace(/^\s+/, '');
        }
        return indent + '- ' + (typeof v === 'string' ? q(v) : JSON.stringify(v));
      }).join('\n');
    }
    var lines = [];
    Object.keys(value).forEach(function (k) {
      var v = value[k];
      if (v === undefined) return;
      if (Array.isArray(v) && v.length && v.every(function (x) { return typeof x !== 'object'; })) lines.push(indent + k + ': ' + JSON.stringify(v));
      else if (v && typeof v === 'object') lines.push(indent + k + ':\n' + toYaml(v, indent + '  '));
      else lines.push(indent + k + ': ' + (typeof v === 'string' ? q(v) : JSON.stringify(v)));
    });
    return lines.join('\n');
  }

  function renderLogs(view) {
    var level = el('select', null, ['', 'debug', 'info', 'warn', 'error'].map(function (l) { return el('option', { value: l }, [l || 'all levels']); }));
    var text = el('input', { type: 'search', placeholder: 'text in message' });
    var table = el('table', { cls: 'kv logs' });
    var more = el('div', { cls: 'muted' });
    var serial = viewSerial;
    var timer = null;
    function load() {
      api('/api/logs', { prefix: current.info.prefix, limit: 1000, level: level.value || null, q: text.value || null }).then(function (body) {
        if (serial !== viewSerial) return;
        table.innerHTML = '';
        table.appendChild(el('tr', null, [el('th', { text: '#' }), el('th', { text: 'time' }), el('th', { text: 'level' }), el('th', { text: 'message' })]));
        body.logs.forEach(function (r) {
          table.appendChild(el('tr', { cls: String(r.level) }, [el('td', { text: String(r.index) }), el('td', { text: fmtTime(r.timestamp) }),
            el('td', { cls: 'level', text: r.level }), el('td', { text: String(r.message) })]));
        });
        more.textContent = body.logs.length + ' records' + (body.hasMore ? ' (more not shown)' : '');
      }).catch(function (e) { more.textContent = e.message; });
    }
    level.addEventListener('change', load);
    text.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(load, 200); });
    view.appendChild(el('div', { cls: 'toolbar' }, [level, text]));
    view.appendChild(el('div', { cls: 'panel' }, [table, more]));
    load();
  }

  function renderParams(view) {
    var box = el('input', { type: 'search', placeholder: 'search parameters' });
    var table = el('table', { cls: 'kv' });
    function draw() {
      var q = box.value.toLowerCase();
      var groups = {};
      Object.keys(current.params).sort().forEach(function (k) {
        var v = fmt(current.params[k]);
        if (q && (k + ' ' + v).toLowerCase().indexOf(q) < 0) return;
        var dot = k.lastIndexOf('.');
        var g = dot > 0 ? k.slice(0, dot) : '';
        (groups[g] = groups[g] || []).push([dot > 0 ? k.slice(dot + 1) : k, v, k]);
      });
      table.innerHTML = '';
      Object.keys(groups).sort().forEach(function (g) {
        if (g) table.appendChild(el('tr', null, [el('th', { cls: 'section', colspan: 2, text: g })]));
        groups[g].forEach(function (row) {
          table.appendChild(el('tr', { 'data-param': row[2] }, [el('td', { text: row[0], style: g ? 'padding-left:20px' : '' }), el('td', { cls: 'value', text: row[1] })]));
        });
      });
      if (!Object.keys(groups).length) table.appendChild(el('tr', null, [el('td', { cls: 'muted', text: 'no parameters' + (q ? ' match' : '') })]));
    }
    box.addEventListener('input', draw);
    view.appendChild(el('div', { cls: 'toolbar' }, [box]));
    view.appendChild(el('div', { cls: 'panel' }, [table]));
    draw();
  }

  function renderFiles(view) {
    var panel = el('div', { cls: 'panel files' });
    view.appendChild(panel);
    if (!current.files.length) { panel.appendChild(el('p', { cls: 'muted', text: 'This run has no files.' })); return; }
    var table = el('table', { cls: 'kv' }, [el('tr', null, [el('th', { text: 'path' }), el('th', { text: 'size' })])]);
    panel.appendChild(table);
    var images = el('div');
    panel.appendChild(images);
    current.files.forEach(function (f) {
      var href = url('/api/file', { prefix: current.info.prefix, path: f.path });
      table.appendChild(el('tr', null, [el('td', null, [el('a', { href: href, target: '_blank', rel: 'noopener', text: f.path })]),
        el('td', { text: fmtSize(f.size) })]));
      if (/\.(png|jpe?g|gif|webp|bmp)$/i.test(f.path)) {
        images.appendChild(el('h3', { text: f.path }));
        images.appendChild(el('img', { src: href, alt: f.path, loading: 'lazy' }));
      }
    });
  }

  // -- charts ----------------------------------------------------------------------

  function ema(values, alpha) {
    // debiased exponential moving average; alpha is the weight of the past
    var out = new Array(values.length);
    var acc = 0, weight = 0;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null || v === undefined || !isFinite(v)) { out[i] = weight ? acc / weight : null; continue; }
      acc = alpha * acc + (1 - alpha) * v;
      weight = alpha * weight + (1 - alpha);
      out[i] = acc / weight;
    }
    return { values: out, acc: acc, weight: weight };
  }

  function hexToRgba(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return 'rgba(' + ((n >> 16) & 255) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + a + ')';
  }

  function xParam(columns, override) {
    var x = override || state.x;
    if (x === '_ts_rel') x = '_ts';
    if (x !== 'index' && columns && columns.indexOf(x) < 0) return 'index';
    return x;
  }

  function xAxisLayout(x) {
    if (x === '_ts' && state.x !== '_ts_rel') return { type: 'date', title: { text: 'time' } };
    if (x === '_ts') return { title: { text: 'seconds since start' } };
    return { title: { text: x } };
  }

  function Chart(parent, opts) {
    this.prefix = opts.prefix;
    this.stream = opts.stream;
    this.keys = opts.keys;
    this.title = opts.title || (streamLabel(opts.stream) + ' / ' + opts.keys.join(', '));
    this.columns = opts.columns || [];
    this.xOverride = opts.xKey && opts.xKey !== 'index' ? opts.xKey : null;
    this.bins = opts.bins || null;
    this.range = null;   // [start, stop) drawn when zoomed, null for the whole stream
    this.data = null;
    this.drawn = false;
    this.visible = false;
    this.busy = false;
    this.t0 = null;
    this.el = el('div', { cls: 'chart', 'data-stream': opts.stream === null ? '' : opts.stream, 'data-key': opts.keys.join(','),
      'data-title': this.title }, [el('div', { cls: 'placeholder', text: this.title })]);
    this.el._chart = this;
    parent.appendChild(this.el);
  }

  Chart.prototype.xName = function () { return xParam(this.columns, this.xOverride); };

  Chart.prototype.width = function () {
    return this.bins || Math.max(50, Math.min(4000, Math.round((this.el.clientWidth || 600) - 70)));
  };

  Chart.prototype.fetch = function () {
    var self = this;
    var params = { prefix: this.prefix, stream: this.stream === null ? '' : this.stream, keys: this.keys.join(','),
      width: this.width(), x: this.xName() };
    if (this.range) { params.start = this.range[0]; params.stop = this.range[1]; }
    return api('/api/buckets', params).then(function (b) {
      if (self.xName() === '_ts') {
        if (!self.range || self.t0 === null) self.t0 = b.x.length ? b.x[0] : 0;
      }
      return b;
    });
  };

  Chart.prototype.xs = function (raw) {
    var x = this.xName();
    if (x !== '_ts') return raw;
    var t0 = this.t0 || 0;
    if (state.x === '_ts_rel') return raw.map(function (v) { return v === null ? null : v - t0; });
    return raw.map(function (v) { return v === null ? null : new Date(v * 1000); });
  };

  Chart.prototype.traces = function (b) {
    var self = this;
    var xs = this.xs(b.x);
    var out = [];
    this.emaState = {};
    this.keys.forEach(function (key, i) {
      var s = b.series[key];
      var color = COLORS[i % COLORS.length];
      var smooth = state.smooth > 0;
      out.push({ x: xs, y: s.min, mode: 'lines', line: { width: 0, color: color }, hoverinfo: 'skip', showlegend: false, name: key + ' min', type: 'scatter' });
      out.push({ x: xs, y: s.max, mode: 'lines', line: { width: 0, color: color }, fill: 'tonexty', fillcolor: hexToRgba(color, 0.18),
        hoverinfo: 'skip', showlegend: false, name: key + ' max', type: 'scatter' });
      out.push({ x: xs, y: s.last, mode: b.exact && s.last.length < 60 ? 'lines+markers' : 'lines', marker: { size: 4 },
        line: { width: smooth ? 1 : 1.6, color: color }, opacity: smooth ? 0.3 : 1, name: key, type: 'scatter',
        customdata: b.index, hovertemplate: key + ' %{y:.6g}<br>index %{customdata}<extra></extra>' });
      var e = ema(s.last, state.smooth);
      self.emaState[key] = e;
      out.push({ x: xs, y: e.values, mode: 'lines', line: { width: 1.8, color: color }, name: key + ' (smoothed)', type: 'scatter',
        visible: smooth, hovertemplate: key + ' smoothed %{y:.6g}<extra></extra>' });
    });
    return out;
  };

  Chart.prototype.layout = function () {
    var xaxis = xAxisLayout(this.xName());
    if (this.range && this.viewRange) { xaxis.range = this.viewRange.slice(); xaxis.autorange = false; }
    return { title: { text: this.title, font: { size: 13 }, x: 0.02 }, margin: { l: 55, r: 15, t: 30, b: 38 },
      xaxis: xaxis, yaxis: { type: state.log ? 'log' : 'linear', exponentformat: 'e' },
      hovermode: 'x unified', showlegend: this.keys.length > 1, legend: { orientation: 'h', y: -0.25 },
      paper_bgcolor: '#fff', plot_bgcolor: '#fff', uirevision: null };
  };

  Chart.prototype.draw = function () {
    var self = this;
    if (this.busy) { this.again = true; return Promise.resolve(); }
    this.busy = true;
    var serial = viewSerial;
    return this.fetch().then(function (b) {
      if (serial !== viewSerial || self.dead) return;
      self.data = b;
      var first = !self.drawn;
      if (first) self.el.innerHTML = '';
      self.ignoreRelayout = true;
      var p = Plotly.react(self.el, self.traces(b), self.layout(), { responsive: true, displaylogo: false,
        modeBarButtonsToRemove: ['lasso2d', 'select2d'] });
      return Promise.resolve(p).then(function () {
        self.ignoreRelayout = false;
        if (first) {
          self.el.on('plotly_relayout', function (ev) { self.onRelayout(ev); });
          self.drawn = true;
        }
        self.mark(b);
      });
    }).catch(function (e) {
      if (!self.drawn) self.el.innerHTML = '';
      self.el.appendChild(el('div', { cls: 'placeholder error', text: self.title + ': ' + e.message }));
    }).then(function () {
      self.busy = false;
      if (self.again) { self.again = false; self.draw(); }
    });
  };

  Chart.prototype.mark = function (b) {
    var s = b.series[this.keys[0]];
    var last = null;
    for (var i = s.last.length - 1; i >= 0; i--) { if (s.last[i] !== null) { last = s.last[i]; break; } }
    this.el.setAttribute('data-points', String(s.last.length));
    this.el.setAttribute('data-last', last === null ? '' : String(last));
    this.el.setAttribute('data-start', String(b.start));
    this.el.setAttribute('data-stop', String(b.stop));
    this.el.setAttribute('data-exact', b.exact ? 'true' : 'false');
    this.el.setAttribute('data-count', String(b.count));
    this.el.setAttribute('data-drawn', String(Date.now()));
  };

  Chart.prototype.indexAt = function (xv, up) {
    // the point index at x value xv (of the axis drawn), by the drawn buckets
    var x = this.xName();
    if (x === 'index') return up ? Math.ceil(xv) + 1 : Math.floor(xv);
    var b = this.data;
    if (!b || !b.x.length) return 0;
    var xs = b.x;
    var target = xv;
    if (x === '_ts') target = state.x === '_ts_rel' ? xv + (this.t0 || 0) : new Date(xv).getTime() / 1000;
    var lo = 0, hi = xs.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (xs[mid] !== null && xs[mid] < target) lo = mid + 1; else hi = mid; }
    if (!up) return b.index[Math.max(0, lo - 1)];
    return lo + 1 < b.index.length ? b.index[lo + 1] : b.stop;
  };

  Chart.prototype.onRelayout = function (ev) {
    if (this.ignoreRelayout) return;
    var r0 = ev['xaxis.range[0]'], r1 = ev['xaxis.range[1]'];
    if (r0 === undefined && ev['xaxis.range']) { r0 = ev['xaxis.range'][0]; r1 = ev['xaxis.range'][1]; }
    if (ev['xaxis.autorange']) {
      if (!this.range) return;
      this.range = null; this.viewRange = null;
      writeHash();
      this.draw();
      return;
    }
    if (r0 === undefined || r1 === undefined) return;
    var count = this.data ? this.data.count : 0;
    var start = Math.max(0, this.indexAt(r0, false));
    var stop = Math.min(count, Math.max(start + 1, this.indexAt(r1, true)));
    this.range = [start, stop];
    this.viewRange = [r0, r1];
    this.draw();
  };

  Chart.prototype.tail = function () {
    var self = this;
    if (!this.drawn || this.range || this.busy || !this.data) return Promise.resolve();
    var b = this.data;
    if (b.stop > b.index.length * 1 && !b.exact) {
      // bucketed: redraw whole when the stream grew by more than a bucket's worth
      return api('/api/tail', { prefix: this.prefix, stream: this.stream === null ? '' : this.stream, keys: this.keys.join(','),
        after: b.stop - 1, x: this.xName(), limit: 1 }).then(function (t) { if (t.count > b.stop) return self.draw(); });
    }
    this.busy = true;
    var serial = viewSerial;
    return api('/api/tail', { prefix: this.prefix, stream: this.stream === null ? '' : this.stream, keys: this.keys.join(','),
      after: b.stop - 1, x: this.xName() }).then(function (t) {
      if (serial !== viewSerial || self.dead || !t.index.length) return;
      var xs = self.xs(t.x);
      var update = { x: [], y: [] }, which = [];
      self.keys.forEach(function (key, i) {
        var ys = t.series[key];
        var e = self.emaState[key];
        var sm = ys.map(function (v) {
          if (v !== null && isFinite(v)) { e.acc = state.smooth * e.acc + (1 - state.smooth) * v; e.weight = state.smooth * e.weight + (1 - state.smooth); }
          return e.weight ? e.acc / e.weight : null;
        });
        [ys, ys, ys, sm].forEach(function (arr, j) { update.x.push(xs); update.y.push(arr); which.push(4 * i + j); });
        var s = b.series[key];
        s.min = s.min.concat(ys); s.max = s.max.concat(ys); s.last = s.last.concat(ys);
      });
      b.index = b.index.concat(t.index);
      b.x = b.x.concat(t.x);
      b.stop = t.index[t.index.length - 1] + 1;
      b.count = t.count;
      return Promise.resolve(Plotly.extendTraces(self.el, update, which)).then(function () {
        self.mark(b);
        if (b.index.length > 2 * self.width()) return self.redrawLater = true;
      });
    }).catch(function () {}).then(function () {
      self.busy = false;
      if (self.redrawLater) { self.redrawLater = false; self.draw(); }
    });
  };

  Chart.prototype.destroy = function () {
    this.dead = true;
    try { Plotly.purge(this.el); } catch (e) { /* already gone */ }
  };

  function observeCharts() {
    if (!('IntersectionObserver' in window)) { charts.forEach(function (c) { c.visible = true; c.draw(); }); return; }
    observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        var c = entry.target._chart;
        if (!c) return;
        c.visible = entry.isIntersecting;
        if (c.visible && !c.drawn && !c.busy) c.draw();
      });
    }, { rootMargin: '200px' });
    charts.forEach(function (c) { observer.observe(c.el); });
  }

  function startLive() {
    if (livePoll || state.tab !== 'dashboard') return;
    var serial = viewSerial;
    livePoll = setInterval(function () {
      if (serial !== viewSerial || !current || !current.info.live) { stopLive(); return; }
      charts.forEach(function (c) { if (c.visible) c.tail(); });
    }, 1000);
  }

  function stopLive() { if (livePoll) clearInterval(livePoll); livePoll = null; }

  function redrawCharts() {
    charts.forEach(function (c) {
      c.range = null; c.viewRange = null; c.t0 = null;
      if (c.drawn || c.visible) c.draw();
    });
  }

  // -- compare -----------------------------------------------------------------------

  function renderCompare(view) {
    var serial = viewSerial;
    var prefixes = state.checked.slice();
    view.appendChild(el('p', { cls: 'muted', text: 'Loading ' + prefixes.length + ' runs\u2026' }));
    Promise.all(prefixes.map(function (p) { return api('/api/run', { prefix: p }); })).then(function (details) {
      if (serial !== viewSerial) return;
      view.innerHTML = '';
      // streams and keys all checked runs share
      var common = null;
      details.forEach(function (d) {
        var mine = {};
        d.streams.forEach(function (s) { if (s.count) s.keys.forEach(function (k) { if (k !== '_ts') mine[(s.name === null ? '' : s.name) + '\u0000' + k] = s.keys; }); });
        if (common === null) common = mine;
        else Object.keys(common).forEach(function (k) { if (!(k in mine)) delete common[k]; });
      });
      var byRun = {};
      details.forEach(function (d) { byRun[d.info.prefix] = d; });
      var folders = {};
      details.forEach(function (d) { (folders[d.info.folder] = folders[d.info.folder] || []).push(d.info.prefix); });
      var groups;
      var mode;
      if (state.group) {
        mode = 'group';
        groups = {};
        details.forEach(function (d) { var g = state.group + '=' + fmt(d.params[state.group]); (groups[g] = groups[g] || []).push(d.info.prefix); });
      } else if (Object.keys(folders).length > 1) { mode = 'folder'; groups = folders; } else { mode = 'runs'; groups = null; }
      var note = mode === 'runs' ? 'one line per run' : mode === 'folder' ? 'one mean line per folder, band: min to max across its runs' : 'one mean line per ' + state.group + ' value, band: min to max';
      view.appendChild(el('div', { cls: 'toolbar' }, [el('span', { cls: 'muted', text: prefixes.length + ' runs, ' + Object.keys(common || {}).length + ' shared charts, ' + note })]));
      var grid = el('div', { cls: 'charts' });
      view.appendChild(grid);
      var counter = function (k) { var key = k.split('\u0000')[1]; return key === 'step' || key === 'epoch' || key === 'iteration' ? 1 : 0; };
      Object.keys(common || {}).sort(function (a, b) { return counter(a) - counter(b) || (a < b ? -1 : a > b ? 1 : 0); }).forEach(function (k) {
        var parts = k.split('\u0000');
        var c = new CompareChart(grid, { stream: parts[0] === '' ? null : parts[0], key: parts[1], columns: common[k], mode: mode, groups: groups, prefixes: prefixes });
        charts.push(c);
      });
      observeCharts();
      view.appendChild(el('h3', { text: 'Parameters that differ' }));
      view.appendChild(paramsDiff(details));
    }).catch(function (e) { view.innerHTML = ''; view.appendChild(el('p', { cls: 'error', text: e.message })); });
  }

  function renderFolderDashrc(view) {
    var grid = el('div', { cls: 'charts' });
    view.appendChild(grid);
    folderDashrc.parsed.charts.forEach(function (c) {
      var keys = c.yKeys || (c.yKey ? [c.yKey] : []);
      if (!c.series || !c.series.length || !keys.length) return;
      var xKey = c.xKey && typeof c.xKey === 'object' ? c.xKey['default'] : c.xKey;
      var chart = new CompareChart(grid, { stream: c.stream || null, key: keys[0], columns: null, mode: 'series',
        series: c.series, title: c.title, xKey: xKey });
      charts.push(chart);
    });
    observeCharts();
  }

  function paramsDiff(details) {
    var keys = {};
    details.forEach(function (d) { Object.keys(d.params).forEach(function (k) { keys[k] = true; }); });
    var differing = Object.keys(keys).sort().filter(function (k) {
      var vals = details.map(function (d) { return JSON.stringify(d.params[k]); });
      return vals.some(function (v) { return v !== vals[0]; });
    });
    var table = el('table', { cls: 'kv panel', id: 'params-diff' });
    table.appendChild(el('tr', null, [el('th', { text: 'param' })].concat(details.map(function (d) { return el('th', { text: d.info.prefix }); }))));
    differing.forEach(function (k) {
      table.appendChild(el('tr', { 'data-param': k }, [el('td', { text: k })].concat(details.map(function (d) { return el('td', { cls: 'value', text: fmt(d.params[k]) }); }))));
    });
    if (!differing.length) table.appendChild(el('tr', null, [el('td', { cls: 'muted', colspan: details.length + 1, text: 'all parameters are equal' })]));
    return table;
  }

  function CompareChart(parent, opts) {
    Chart.call(this, parent, { prefix: null, stream: opts.stream, keys: [opts.key], columns: opts.columns,
      title: opts.title || streamLabel(opts.stream) + ' / ' + opts.key, xKey: opts.xKey });
    this.series = opts.series || null;
    this.mode = opts.mode;
    this.groups = opts.groups;
    this.prefixes = opts.prefixes;
  }
  CompareChart.prototype = Object.create(Chart.prototype);

  CompareChart.prototype.draw = function () {
    var self = this;
    var serial = viewSerial;
    var key = this.keys[0];
    var stream = this.stream === null ? '' : this.stream;
    var x = this.xName();
    var width = this.width();
    var jobs;
    if (this.mode === 'series') {
      jobs = this.series.map(function (entry) {
        return api('/api/buckets', { prefix: entry.prefix, stream: stream, keys: key, width: width, x: x }).then(function (b) {
          var s = b.series[key];
          return { label: entry.label || entry.prefix, color: entry.color, dash: entry.dash, x: b.x, y: s.last,
            min: s.min, max: s.max, band: false, n: s.last.length };
        });
      });
    } else if (this.mode === 'runs') {
      jobs = this.prefixes.map(function (p) {
        var q = { prefix: p, stream: stream, keys: key, width: width, x: x };
        if (self.range) { q.start = self.range[0]; q.stop = self.range[1]; }
        return api('/api/buckets', q).then(function (b) {
          var s = b.series[key];
          return { label: p, x: b.x, y: s.last, min: s.min, max: s.max, band: false, n: s.last.length };
        });
      });
    } else {
      jobs = Object.keys(this.groups).sort().map(function (g) {
        return api('/api/aggregate', { prefixes: self.groups[g].join(','), stream: stream, key: key, width: width, x: x }).then(function (a) {
          return { label: g + ' (' + self.groups[g].length + ')', x: a.x, y: a.mean, min: a.min, max: a.max, band: true, n: a.x.length };
        });
      });
    }
    this.busy = true;
    return Promise.all(jobs).then(function (lines) {
      if (serial !== viewSerial || self.dead) return;
      var traces = [];
      var t0 = null;
      if (x === '_ts' && state.x === '_ts_rel') {
        lines.forEach(function (l) { if (l.x.length && (t0 === null || l.x[0] < t0)) t0 = l.x[0]; });
      }
      var conv = function (xs) {
        if (x !== '_ts') return xs;
        return xs.map(function (v) { return v === null ? null : state.x === '_ts_rel' ? v - t0 : new Date(v * 1000); });
      };
      lines.forEach(function (l, i) {
        var color = /^#[0-9a-fA-F]{6}$/.test(l.color || '') ? l.color : COLORS[i % COLORS.length];
        var xs = conv(l.x);
        traces.push({ x: xs, y: l.min, mode: 'lines', line: { width: 0, color: color }, hoverinfo: 'skip', showlegend: false, type: 'scatter' });
        traces.push({ x: xs, y: l.max, mode: 'lines', line: { width: 0, color: color }, fill: 'tonexty', fillcolor: hexToRgba(color, l.band ? 0.2 : 0.1),
          hoverinfo: 'skip', showlegend: false, type: 'scatter' });
        var smooth = state.smooth > 0;
        traces.push({ x: xs, y: l.y, mode: 'lines', line: { width: smooth ? 1 : 1.6, color: color, dash: l.dash || 'solid' }, opacity: smooth ? 0.3 : 1, name: l.label, type: 'scatter',
          showlegend: !smooth });
        if (smooth) traces.push({ x: xs, y: ema(l.y, state.smooth).values, mode: 'lines', line: { width: 1.8, color: color }, name: l.label, type: 'scatter' });
      });
      self.el.innerHTML = '';
      var layout = self.layout();
      layout.showlegend = true;
      layout.legend = { orientation: 'h', x: 0, y: -0.13, yanchor: 'top', font: { size: 10 } };
      layout.xaxis.title = null;
      layout.margin.b = 52;
      self.ignoreRelayout = true;
      return Promise.resolve(Plotly.react(self.el, traces, layout, { responsive: true, displaylogo: false })).then(function () {
        self.ignoreRelayout = false;
        if (!self.drawn && self.mode === 'runs' && x === 'index') {
          // runs of one folder on the index axis: a zoom fetches the visible range again
          self.el.on('plotly_relayout', function (ev) { self.onCompareRelayout(ev); });
        }
        self.drawn = true;
        self.el.setAttribute('data-lines', String(lines.length));
        self.el.setAttribute('data-start', self.range ? String(self.range[0]) : '0');
        self.el.setAttribute('data-mode', self.mode);
        self.el.setAttribute('data-points', lines.map(function (l) { return l.n; }).join(','));
        self.el.setAttribute('data-last', lines.map(function (l) { return l.y.length ? l.y[l.y.length - 1] : ''; }).join(','));
      });
    }).catch(function (e) {
      self.el.innerHTML = '';
      self.el.appendChild(el('div', { cls: 'placeholder error', text: self.title + ': ' + e.message }));
    }).then(function () { self.busy = false; });
  };
  CompareChart.prototype.tail = function () { return Promise.resolve(); };

  CompareChart.prototype.onCompareRelayout = function (ev) {
    if (this.ignoreRelayout) return;
    if (ev['xaxis.autorange']) {
      if (!this.range) return;
      this.range = null; this.viewRange = null;
      this.draw();
      return;
    }
    var r0 = ev['xaxis.range[0]'], r1 = ev['xaxis.range[1]'];
    if (r0 === undefined && ev['xaxis.range']) { r0 = ev['xaxis.range'][0]; r1 = ev['xaxis.range'][1]; }
    if (r0 === undefined || r1 === undefined) return;
    this.range = [Math.max(0, Math.floor(r0)), Math.max(1, Math.ceil(r1) + 1)];
    this.viewRange = [r0, r1];
    this.draw();
  };

  // -- controls and keyboard -------------------------------------------------------

  function bindControls() {
    var filter = $('filter'), expr = $('expr'), smooth = $('smooth'), xaxis = $('xaxis'), logscale = $('logscale'), groupby = $('groupby');
    filter.value = state.q; expr.value = state.expr; smooth.value = state.smooth; $('smooth-value').textContent = state.smooth;
    xaxis.value = state.x; logscale.checked = state.log;
    filter.addEventListener('input', function () { state.q = filter.value; writeHash(); renderRuns(); });
    expr.addEventListener('input', function () { state.expr = expr.value; writeHash(); renderRuns(); });
    var smoothTimer = null;
    smooth.addEventListener('input', function () {
      state.smooth = parseFloat(smooth.value) || 0;
      $('smooth-value').textContent = state.smooth;
      writeHash();
      clearTimeout(smoothTimer);
      smoothTimer = setTimeout(function () { charts.forEach(function (c) { if (c.drawn) c.draw(); }); }, 120);
    });
    xaxis.addEventListener('change', function () { state.x = xaxis.value; writeHash(); redrawCharts(); });
    logscale.addEventListener('change', function () {
      state.log = logscale.checked; writeHash();
      charts.forEach(function (c) { if (c.drawn) Plotly.relayout(c.el, { 'yaxis.type': state.log ? 'log' : 'linear' }); });
    });
    groupby.addEventListener('change', function () { state.group = groupby.value; writeHash(); renderRuns(); if (state.tab === 'compare') renderView(); });
    document.addEventListener('keydown', function (ev) {
      var t = ev.target;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) {
        if (ev.key === 'Escape') t.blur();
        return;
      }
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.key === '/') { ev.preventDefault(); filter.focus(); return; }
      if (ev.key === 'j' || ev.key === 'k') {
        var rows = Array.prototype.map.call(document.querySelectorAll('#runs tr.run'), function (tr) { return tr.getAttribute('data-prefix'); });
        if (!rows.length) return;
        var i = rows.indexOf(state.run);
        i = i < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, i + (ev.key === 'j' ? 1 : -1)));
        selectRun(rows[i]);
        var tr = document.querySelector('#runs tr.run[data-prefix="' + CSS.escape(rows[i]) + '"]');
        if (tr) tr.scrollIntoView({ block: 'nearest' });
        return;
      }
      var n = parseInt(ev.key, 10);
      if (n >= 1 && n <= 5 && current) setTab(TABS[n - 1]);
    });
    window.addEventListener('hashchange', function () {
      var before = JSON.stringify(state);
      readHash();
      if (JSON.stringify(state) === before) return;
      bindValues();
      renderRuns();
      if (state.run && (!current || current.info.prefix !== state.run)) selectRun(state.run, true);
      else { renderTabs(); renderView(); }
    });
  }

  function bindValues() {
    $('filter').value = state.q; $('expr').value = state.expr; $('smooth').value = state.smooth;
    $('smooth-value').textContent = state.smooth; $('xaxis').value = state.x; $('logscale').checked = state.log;
    $('groupby').value = state.group;
  }

  function start() {
    readHash();
    bindControls();
    renderTabs();
    loadRuns().then(loadFolderDashrc).then(function () {
      if (state.tab === 'folder' && !folderDashrc) state.tab = 'dashboard';
      state.checked = state.checked.filter(function (p) { return runs.some(function (r) { return r.prefix === p; }); });
      if (state.tab === 'compare' && state.checked.length < 2) state.tab = 'dashboard';
      if (!state.run && runs.length && state.tab !== 'compare') state.run = runs[0].prefix;
      writeHash();
      renderRuns();
      if (state.run) return selectRun(state.run, true);
      renderTabs();
      renderView();
    }).catch(function (e) {
      $('view').innerHTML = '';
      $('view').appendChild(el('p', { cls: 'error', text: 'cannot list runs: ' + e.message }));
    }).then(function () {
      document.body.setAttribute('data-ready', '1');
      scheduleRunsPoll();
    });
  }

  window.mlDash = { polling: function () { return livePoll !== null; }, parseExpr: parseExpr };
  start();
})();
