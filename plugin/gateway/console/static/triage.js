// Triage keyboard: j/k move, 1-9 pick a label, Enter records the picked label.
(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll(".triage-item"));
  if (!items.length) { return; }
  var current = 0;
  function select(i) {
    current = Math.max(0, Math.min(items.length - 1, i));
    items.forEach(function (el, n) { el.classList.toggle("current", n === current); });
    items[current].focus();
    items[current].scrollIntoView({ block: "nearest" });
  }
  items.forEach(function (el, n) { el.addEventListener("focusin", function () { if (current !== n) { current = n; items.forEach(function (o, m) { o.classList.toggle("current", m === n); }); } }); });
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    var tag = (e.target && e.target.tagName) || "";
    if (tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && e.target.type !== "radio")) { return; }
    var item = items[current];
    if (e.key === "j") { select(current + 1); e.preventDefault(); }
    else if (e.key === "k") { select(current - 1); e.preventDefault(); }
    else if (/^[1-9]$/.test(e.key)) {
      var radios = item.querySelectorAll("input[type=radio]");
      var r = radios[parseInt(e.key, 10) - 1];
      if (r) { r.checked = true; e.preventDefault(); }
    } else if (e.key === "Enter" && tag !== "BUTTON" && tag !== "A") {
      var form = item.querySelector("form");
      if (form && form.querySelector("input[type=radio]:checked")) { e.preventDefault(); form.requestSubmit(); }
    }
  });
  select(0);
})();
