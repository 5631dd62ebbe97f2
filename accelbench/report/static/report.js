// accelbench report: draw the charts from the embedded JSON, make the tables sortable.
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

  // Sort on header click: numbers by data-sort, text otherwise; cells without a value always sort last.
  function key(cell) {
    if (!cell.hasAttribute("data-sort")) { return null; }
    var v = cell.getAttribute("data-sort");
    var n = Number(v);
    return (v !== "" && !isNaN(n)) ? n : v.toLowerCase();
  }
  function sortTable(table, col, th) {
    var body = table.tBodies[0];
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null || y === null) { return (x === null) - (y === null); }
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      var r = x < y ? -1 : (x > y ? 1 : 0);
      return asc ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () { sortTable(table, i, th); });
    });
  });
})();
