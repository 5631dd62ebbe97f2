// accelbench report: draw the charts from the embedded JSON, make the tables sortable, and show the big
// tables a page at a time (their rows embedded once as JSON; sorting and the filter reach every row).
(function () {
  "use strict";
  var figs = JSON.parse(document.getElementById("ab-figures").textContent);
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  var jobs = [];
  Object.keys(figs).forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) { console.warn("accelbench: no element for chart " + id); return; }
    var f = figs[id];
    jobs.push(Plotly.newPlot(el, f.data, f.layout, config));
  });
  // The browser tests (and anyone scripting the page) wait for this attribute.
  Promise.all(jobs).then(function () { document.body.setAttribute("data-charts-rendered", String(jobs.length)); },
    function (err) { document.body.setAttribute("data-charts-error", String(err)); throw err; });

  // Sort keys: numbers by data-sort, text otherwise; cells without a value always sort last. The same rule
  // for HTML rows (the data-sort attribute) and for paged tables (the embedded key).
  function keyOf(v) {
    if (v === null || v === undefined) { return null; }
    if (typeof v === "number") { return v; }
    var n = Number(v);
    return (v !== "" && !isNaN(n)) ? n : String(v).toLowerCase();
  }
  function compare(x, y, asc) {
    if (x === null || y === null) { return (x === null) - (y === null); }
    if (typeof x !== typeof y) { x = String(x); y = String(y); }
    var r = x < y ? -1 : (x > y ? 1 : 0);
    return asc ? r : -r;
  }
  function toggle(table, th) {
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    return asc;
  }
  function sortTable(table, col, th) {
    var body = table.tBodies[0];
    var asc = toggle(table, th);
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].hasAttribute("data-sort") ? keyOf(a.cells[col].getAttribute("data-sort")) : null;
      var y = b.cells[col].hasAttribute("data-sort") ? keyOf(b.cells[col].getAttribute("data-sort")) : null;
      return compare(x, y, asc);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  // A paged table: data = {n, page, numeric, cols: [{t: texts, s: keys | 1 (the text) | absent, c: classes,
  // h: tooltips | absent}]}, classes and tooltips as one string, a list, or {k: distinct values, i: index
  // per row} (see accelbench.report.html.model.Table.data).
  function pick(x, i) {
    return typeof x === "string" ? x : (Array.isArray(x) ? x[i] : x.k[x.i[i]]);
  }
  function Paged(table, data, pager) {
    var self = this;
    this.table = table; this.data = data; this.pager = pager; this.page = 0;
    this.numeric = {};
    data.numeric.forEach(function (j) { self.numeric[j] = true; });
    this.all = [];
    for (var i = 0; i < data.n; i++) { this.all.push(i); }
    this.order = this.all.slice();  // every row, in the current sort order
    this.shown = this.order;  // the rows that pass the filter, in that order
    this.query = [];
    this.haystack = null;  // lower-cased row texts, built on the first filter
    pager.querySelector(".pager-prev").addEventListener("click", function () { self.go(self.page - 1); });
    pager.querySelector(".pager-next").addEventListener("click", function () { self.go(self.page + 1); });
    pager.querySelector(".pager-filter").addEventListener("input", function (e) { self.filter(e.target.value); });
    this.render();
  }
  Paged.prototype.key = function (j, i) {
    var s = this.data.cols[j].s;
    if (s === undefined) { return null; }
    return keyOf(s === 1 ? this.data.cols[j].t[i] : s[i]);
  };
  Paged.prototype.sort = function (col, th) {
    var self = this;
    var asc = toggle(this.table, th);
    var keys = {};
    this.all.forEach(function (i) { keys[i] = self.key(col, i); });
    this.order.sort(function (a, b) { return compare(keys[a], keys[b], asc); });
    this.apply();
  };
  Paged.prototype.filter = function (text) {
    this.query = String(text).toLowerCase().split(/\s+/).filter(function (w) { return w !== ""; });
    this.apply();
  };
  Paged.prototype.apply = function () {
    var self = this;
    if (this.query.length && this.haystack === null) {
      this.haystack = this.all.map(function (i) {
        return self.data.cols.map(function (c) { return c.t[i]; }).join("\u0000").toLowerCase();
      });
    }
    this.shown = !this.query.length ? this.order : this.order.filter(function (i) {
      return self.query.every(function (w) { return self.haystack[i].indexOf(w) >= 0; });
    });
    this.page = 0;
    this.render();
  };
  Paged.prototype.pages = function () { return Math.max(1, Math.ceil(this.shown.length / this.data.page)); };
  Paged.prototype.go = function (p) {
    this.page = Math.min(Math.max(0, p), this.pages() - 1);
    this.render();
  };
  Paged.prototype.render = function () {
    var d = this.data, body = this.table.tBodies[0];
    var start = this.page * d.page, end = Math.min(this.shown.length, start + d.page);
    var frag = document.createDocumentFragment();
    for (var r = start; r < end; r++) {
      var i = this.shown[r], tr = document.createElement("tr");
      for (var j = 0; j < d.cols.length; j++) {
        var c = d.cols[j], td = document.createElement("td");
        td.className = pick(c.c, i) + (this.numeric[j] ? " num" : "");
        if (c.s !== undefined) {
          var s = c.s === 1 ? c.t[i] : c.s[i];
          if (s !== null) { td.setAttribute("data-sort", String(s)); }
        }
        if (c.h !== undefined && pick(c.h, i)) { td.title = pick(c.h, i); }
        td.textContent = c.t[i];
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    body.textContent = "";
    body.appendChild(frag);
    var what = this.query.length ? (this.shown.length + " matching of " + d.n) : String(d.n);
    this.pager.querySelector(".pager-status").textContent = this.shown.length ?
      "rows " + (start + 1) + "–" + end + " of " + what + " · page " + (this.page + 1) + " of " + this.pages() :
      "no row of " + d.n + " matches";
    this.pager.querySelector(".pager-prev").disabled = this.page === 0;
    this.pager.querySelector(".pager-next").disabled = this.page >= this.pages() - 1;
    this.table.setAttribute("data-page", String(this.page + 1));
    this.table.setAttribute("data-shown", String(this.shown.length));
  };

  var tablesEl = document.getElementById("ab-tables");
  var paged = tablesEl ? JSON.parse(tablesEl.textContent) : {};
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var p = null;
    if (table.classList.contains("paged")) {
      var pager = document.querySelector('.pager[data-for="' + table.id + '"]');
      if (!paged[table.id] || !pager) { console.warn("accelbench: no rows for table " + table.id); return; }
      p = new Paged(table, paged[table.id], pager);
    }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () { if (p) { p.sort(i, th); } else { sortTable(table, i, th); } });
    });
  });
})();
