// Sorting and status filters of the instance table; "unfold all" on instance pages.
// Reads only the page's own DOM: no data embedded here, no network.
(function () {
  "use strict";

  var table = document.getElementById("instances");
  if (table) {
    var body = table.tBodies[0];
    var value = function (row, index) {
      var cell = row.cells[index];
      if (!cell) return "";
      return cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    };
    table.querySelectorAll("th[data-sort]").forEach(function (th) {
      th.tabIndex = 0;
      var sort = function () {
        var index = th.cellIndex, numeric = th.getAttribute("data-sort") === "num";
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th[aria-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = value(a, index), y = value(b, index);
          var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) { if (event.key === "Enter") sort(); });
    });

    var shown = document.getElementById("shown");
    var buttons = document.querySelectorAll("button[data-filter]");
    var filter = function (wanted) {
      var count = 0;
      Array.prototype.forEach.call(body.rows, function (row) {
        var visible = wanted === "all" || row.getAttribute("data-status") === wanted ||
          row.getAttribute("data-resolved") === wanted;
        row.hidden = !visible;
        count += visible ? 1 : 0;
      });
      buttons.forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-filter") === wanted); });
      if (shown) shown.textContent = count + " of " + body.rows.length + " shown";
    };
    buttons.forEach(function (b) {
      b.addEventListener("click", function () { filter(b.getAttribute("data-filter")); });
    });
  }

  var unfold = document.getElementById("unfold");
  if (unfold) {
    unfold.addEventListener("click", function () {
      var open = unfold.textContent === "unfold all";
      document.querySelectorAll("details").forEach(function (d) { d.open = open; });
      unfold.textContent = open ? "fold all" : "unfold all";
    });
  }
})();
