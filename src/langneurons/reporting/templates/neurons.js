(function () {
  var scripts = document.getElementsByClassName('ln-browser');
  var root = scripts[scripts.length - 1];
  var data = JSON.parse(document.getElementById(root.getAttribute('data-data')).textContent);
  var q = function (cls) { return root.getElementsByClassName(cls)[0]; };
  var langSel = q('ln-lang'), layerSel = q('ln-layer'), list = q('ln-list'), view = q('ln-card-view');
  var el = function (tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  };
  data.languages.forEach(function (lang) { langSel.appendChild(el('option', lang)); });
  for (var l = 0; l < (data.num_layers || 0); l++) {
    var o = el('option', l); o.value = String(l); layerSel.appendChild(o);
  }
  function pct(x) { return (100 * x).toFixed(0) + '%'; }
  function render() {
    var lang = langSel.value, layer = layerSel.value;
    var rows = (data.ranked[lang] || []).filter(function (r) { return layer === '' || String(r[0]) === layer; });
    while (list.firstChild) { list.removeChild(list.firstChild); }
    rows.slice(0, 200).forEach(function (r) {
      var name = r[0] + ':' + r[1];
      var li = el('li');
      var b = el('button', name, 'ln-neuron' + (data.cards[name] ? ' ln-has-card' : ''));
      b.type = 'button';
      b.setAttribute('data-neuron', name);
      b.addEventListener('click', function () { open(name); });
      li.appendChild(b);
      li.appendChild(el('span', ' p=' + Number(r[2]).toFixed(3) +
        (r[3] === null || r[3] === undefined ? '' : ', writes ' + lang + ' ' + pct(r[3]))));
      list.appendChild(li);
    });
    q('ln-count').textContent = rows.length + ' neurons of ' + lang + (layer === '' ? '' : ' in layer ' + layer);
  }
  function open(name) {
    var card = data.cards[name];
    while (view.firstChild) { view.removeChild(view.firstChild); }
    view.setAttribute('data-open', name);
    if (!card) {
      view.appendChild(el('p', 'No card for ' + name + ' in this file; run: ' + data.command + ' ' + name, 'note'));
      return;
    }
    view.appendChild(el('h4', 'neuron ' + name + ' (site ' + card.site + ')', 'ln-card-title'));
    var bars = el('table', null, 'ln-bars');
    Object.keys(card.languages).forEach(function (lang) {
      var p = Number(card.languages[lang].probability) || 0;
      var tr = el('tr');
      tr.appendChild(el('td', lang));
      var td = el('td'); var bar = el('div', null, 'ln-bar'); bar.style.width = Math.round(p * 240) + 'px';
      td.appendChild(bar); tr.appendChild(td); tr.appendChild(el('td', p.toFixed(3)));
      bars.appendChild(tr);
    });
    view.appendChild(bars);
    Object.keys(card.languages).forEach(function (lang) {
      var top = card.languages[lang].top || [];
      if (!top.length) { return; }
      view.appendChild(el('p', lang + ': top examples', 'ln-sub'));
      var ol = el('ol', null, 'ln-examples');
      top.forEach(function (ex) {
        var li = el('li');
        li.appendChild(el('code', Number(ex.value).toFixed(3)));
        li.appendChild(el('span', ' ' + (ex.left || '')));
        li.appendChild(el('mark', ex.token));
        li.appendChild(el('span', ex.right || ''));
        li.title = ex.text;
        ol.appendChild(li);
      });
      view.appendChild(ol);
    });
    ['promoted', 'suppressed'].forEach(function (kind) {
      var rows = (card.writes || {})[kind] || [];
      var p = el('p', kind + ': ', 'ln-writes');
      rows.slice(0, 15).forEach(function (r) {
        p.appendChild(el('code', r.token));
        p.appendChild(el('sub', r.language || '–'));
        p.appendChild(document.createTextNode(' '));
      });
      view.appendChild(p);
    });
    var share = (card.writes || {}).language_share || {};
    var parts = Object.keys(share).map(function (k) { return k + ' ' + pct(share[k]); });
    view.appendChild(el('p', 'language share of the top-100 promoted tokens: ' + parts.join(', ')));
  }
  langSel.addEventListener('change', render);
  layerSel.addEventListener('change', render);
  q('ln-go-btn').addEventListener('click', function () {
    var v = q('ln-go').value.trim();
    if (/^\d+:\d+$/.test(v)) { open(v); } else { view.setAttribute('data-open', ''); view.textContent = 'Type LAYER:NEURON, e.g. 12:345'; }
  });
  render();
})();
