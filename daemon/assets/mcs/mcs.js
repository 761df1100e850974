/*
 * Quiver's 多客服 plugin page (docs/mcs.md). The WeChat 多客服 PC client shows it in an embedded
 * Internet Explorer: plain ES5 only (no let/const, arrow functions, fetch or Promise; checked by
 * es-check in the test run), XMLHttpRequest and JSON, no external resources.
 *
 * - Every template part is rendered by the daemon into the exact PutMsg string; this page only
 *   hands it to window.external.PutMsg and reports what PutMsg returned (the daemon reads it).
 * - Events of the client (MCS_ClientNotify) are forwarded to the daemon as raw strings and never
 *   evaluated; every text is put into the page with textContent/innerText, never as HTML.
 * - window.external's methods are COM methods in the client (typeof says "unknown"): they are
 *   detected by calling them inside try/catch.
 */
var QuiverMcs = (function () {
  'use strict';

  var API = '/mcs/api/';
  var POLL_MS = 2000;

  function param(name) {
    var q = window.location.search.replace(/^\?/, '').split('&');
    for (var i = 0; i < q.length; i++) {
      var eq = q[i].indexOf('=');
      var k = eq < 0 ? q[i] : q[i].substring(0, eq);
      if (k === name) {
        var v = eq < 0 ? '' : q[i].substring(eq + 1);
        try {
          return decodeURIComponent(v.replace(/\+/g, ' '));
        } catch (e) {
          return v;
        }
      }
    }
    return '';
  }

  var key = param('k');

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(node, text) {
    if ('textContent' in node) {
      node.textContent = text;
    } else {
      node.innerText = text;
    }
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) setText(node, String(text));
    return node;
  }

  function on(node, type, fn) {
    if (node.addEventListener) {
      node.addEventListener(type, fn, false);
    } else if (node.attachEvent) {
      node.attachEvent('on' + type, function () { fn(window.event); });
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, visible) {
    node.className = visible ? '' : 'hidden';
  }

  function status(text) {
    setText(byId('status'), text || '');
  }

  /* One request to the daemon: cb(error, data). The key and the custom header go with it. */
  function api(method, path, body, cb) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, API + path, true);
    xhr.setRequestHeader('X-Quiver-Plugin', '1');
    xhr.setRequestHeader('X-Quiver-Key', key);
    if (body !== null) xhr.setRequestHeader('Content-Type', 'application/json');
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4) return;
      var data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (e) {
        data = null;
      }
      if (xhr.status === 200 && data) {
        cb(null, data);
      } else {
        var msg = data && data.error ? data.error.message : 'HTTP ' + xhr.status;
        cb({ status: xhr.status, code: data && data.error ? data.error.code : '', message: msg }, null);
      }
    };
    xhr.send(body === null ? null : JSON.stringify(body));
  }

  /* Calls window.external[name](arg) inside try/catch: {ok, value} or {ok: false, error}. */
  function callExternal(name, arg) {
    try {
      var ext = window.external;
      var value = ext[name](arg);
      if (value === undefined || value === null) {
        return { ok: false, error: 'window.external.' + name + ' returned nothing' };
      }
      return { ok: true, value: String(value) };
    } catch (e) {
      var why = e && e.message ? e.message : String(e);
      return { ok: false, error: 'window.external.' + name + ' is not available or failed: ' + why };
    }
  }

  /* ---- sends ---- */

  var sendList = byId('sends');

  function sendEntry(label) {
    var li = make('li', 'send');
    li.setAttribute('data-testid', 'mcs-send');
    var state = make('span', 'state', 'rendering');
    var text = make('span', 'label', label);
    var err = make('span', 'error', '');
    li.appendChild(state);
    li.appendChild(text);
    li.appendChild(err);
    if (sendList.firstChild) {
      sendList.insertBefore(li, sendList.firstChild);
    } else {
      sendList.appendChild(li);
    }
    return { li: li, state: state, err: err, retry: null };
  }

  function setState(entry, state, error) {
    entry.li.setAttribute('data-state', state);
    setText(entry.state, state);
    setText(entry.err, error || '');
  }

  function retryButton(entry, sendId) {
    if (entry.retry) entry.li.removeChild(entry.retry);
    var b = make('button', '', '重试 Retry');
    b.setAttribute('type', 'button');
    b.setAttribute('data-testid', 'mcs-retry');
    on(b, 'click', function () {
      entry.li.removeChild(b);
      entry.retry = null;
      setState(entry, 'rendering', '');
      api('POST', 'render', { retry_of: sendId }, function (err, r) {
        if (err) {
          setState(entry, 'refused', err.message);
          return;
        }
        put(entry, r);
      });
    });
    entry.retry = b;
    entry.li.appendChild(b);
  }

  /* Hands the daemon's PutMsg string to the client and reports what it answered. */
  function put(entry, r) {
    entry.li.setAttribute('data-send-id', String(r.send_id));
    entry.li.setAttribute('data-random', r.random);
    setState(entry, 'sending', '');
    var res = callExternal('PutMsg', r.put);
    var done = res.ok ? { send_id: r.send_id, reply: res.value } : { send_id: r.send_id, error: res.error };
    api('POST', 'done', done, function (err, d) {
      if (err) {
        setState(entry, 'unknown', err.message);
        return;
      }
      setState(entry, d.state, d.error || '');
      if (d.state !== 'sent') retryButton(entry, r.send_id);
      refreshState();
    });
  }

  function send(template, part, values) {
    var entry = sendEntry(template.title + ' #' + (part.index + 1));
    api('POST', 'render', {
      library: template.library,
      template_id: template.id,
      part: part.index,
      values: values,
      tz: -new Date().getTimezoneOffset()
    }, function (err, r) {
      if (err) {
        setState(entry, 'refused', err.message);
        return;
      }
      put(entry, r);
    });
  }

  /* ---- search ---- */

  var results = byId('results');
  var searchBox = byId('q');
  var searchTimer = null;
  var lastQuery = null;

  function valuesOf(inputs) {
    var values = {};
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value !== '') values[inputs[i].getAttribute('data-name')] = inputs[i].value;
    }
    return values;
  }

  function partButton(template, part, inputs) {
    var label = (part.puts || part.kind) + ': ' + part.label;
    var b = make('button', 'part', label);
    b.setAttribute('type', 'button');
    b.setAttribute('data-testid', 'mcs-part');
    b.setAttribute('data-template-id', template.id);
    b.setAttribute('data-library', template.library);
    b.setAttribute('data-part', String(part.index));
    if (!part.ok) {
      b.disabled = true;
      b.setAttribute('title', part.why || '');
      setText(b, part.kind + ': ' + (part.why || ''));
    }
    on(b, 'click', function () {
      if (part.ok) send(template, part, valuesOf(inputs));
    });
    return b;
  }

  function drawResults(list) {
    clear(results);
    for (var i = 0; i < list.length; i++) {
      var t = list[i];
      var li = make('li', '');
      li.setAttribute('data-testid', 'mcs-template');
      li.setAttribute('data-template-id', t.id);
      var head = make('div', '');
      head.appendChild(make('span', 'title', t.title));
      if (t.sent_before) head.appendChild(make('span', 'sent-before', '已发送过 sent before'));
      li.appendChild(head);
      var inputs = [];
      if (t.variables.length) {
        var vars = make('div', 'vars');
        for (var v = 0; v < t.variables.length; v++) {
          var input = make('input', '');
          input.setAttribute('type', 'text');
          input.setAttribute('data-name', t.variables[v].name);
          input.setAttribute('placeholder', t.variables[v].label || t.variables[v].name);
          vars.appendChild(input);
          inputs.push(input);
        }
        li.appendChild(vars);
      }
      for (var p = 0; p < t.parts.length; p++) li.appendChild(partButton(t, t.parts[p], inputs));
      results.appendChild(li);
    }
  }

  function search(force) {
    var q = searchBox.value;
    if (!force && q === lastQuery) return;
    lastQuery = q;
    api('GET', 'search?q=' + encodeURIComponent(q), null, function (err, r) {
      if (err) {
        status(err.message);
        return;
      }
      if (q === lastQuery) drawResults(r.results);
    });
  }

  function searchSoon() {
    if (searchTimer) window.clearTimeout(searchTimer);
    searchTimer = window.setTimeout(function () { search(false); }, 150);
  }

  /* ---- state: customer, notice, map click, history ---- */

  var shownNotice = null;
  var customerId = null;

  function drawHistory(rows) {
    var ul = byId('history');
    clear(ul);
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      var li = make('li', '', row.state + ' ' + row.template_id + ' #' + (row.part_index + 1));
      li.setAttribute('data-testid', 'mcs-history-row');
      ul.appendChild(li);
    }
  }

  function drawState(s) {
    var c = s.customer;
    setText(byId('customer'), c ? c.openid : '—');
    var changed = (c ? c.openid : null) !== customerId;
    customerId = c ? c.openid : null;
    var map = byId('map');
    if (s.last_map) {
      setText(map, '位置 Location: ' + (s.last_map.location || '') + ' (' + (s.last_map.latitude || '') + ', ' + (s.last_map.longitude || '') + ')');
      show(map, true);
    }
    if (s.notice && s.notice.seq !== shownNotice) {
      shownNotice = s.notice.seq;
      var box = byId('notice');
      setText(box, s.notice.text);
      show(box, true);
      var res = callExternal('Notice', '');
      if (!res.ok) status(res.error);
    }
    drawHistory(s.history);
    if (changed) search(true);
  }

  function refreshState() {
    api('GET', 'state', null, function (err, s) {
      if (err) {
        status(err.message);
        return;
      }
      drawState(s);
    });
  }

  function poll() {
    refreshState();
    window.setTimeout(poll, POLL_MS);
  }

  /* The client's events: the raw string goes to the daemon, which reads it. */
  function notify(raw) {
    api('POST', 'event', { raw: String(raw) }, function (err) {
      if (err) {
        status(err.message);
        return;
      }
      refreshState();
    });
  }

  on(searchBox, 'keyup', searchSoon);
  on(searchBox, 'input', searchSoon);
  on(byId('search-form'), 'submit', function (e) {
    if (e && e.preventDefault) e.preventDefault();
    if (e) e.returnValue = false;
    search(true);
    return false;
  });
  if (typeof JSON === 'undefined' || !window.XMLHttpRequest) {
    /* IE7 document mode (the official demo forced it): no JSON, no native XMLHttpRequest */
    status('this client shows the page in an old document mode (no JSON or XMLHttpRequest): Quiver needs IE8 or later');
    return { notify: function () {} };
  }
  if (!key) status('no key in the page URL: open the URL `quiver mcs url` prints');
  search(true);
  poll();

  return { notify: notify };
}());

/* The 多客服 client calls this global function with each event (an object-literal string). */
function MCS_ClientNotify(str) {
  QuiverMcs.notify(str);
}
