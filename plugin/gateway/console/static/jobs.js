// Live training progress: poll each running job's status JSON every 2 s until it ends.
(function () {
  "use strict";
  function watch(box) {
    var id = box.getAttribute("data-job-id");
    var bar = box.querySelector("progress");
    var text = box.querySelector(".job-status");
    function tick() {
      fetch("/console/api/jobs/" + encodeURIComponent(id), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (job) {
          var p = job.progress || {};
          if (typeof p.percent === "number" && bar) { bar.value = p.percent; }
          var parts = [job.state];
          if (p.phase) { parts.push(p.phase + (typeof p.percent === "number" ? " " + p.percent.toFixed(0) + "%" : "")); }
          if (job.reason) { parts.push(job.reason); }
          if (job.error) { parts.push(job.error); }
          text.textContent = parts.join(" · ");
          box.setAttribute("data-job-state", job.state);
          if (job.state === "queued" || job.state === "running") { setTimeout(tick, 2000); }
          else if (bar && job.state === "done") { bar.value = 100; }
        })
        .catch(function () { setTimeout(tick, 5000); });
    }
    tick();
  }
  document.querySelectorAll(".job[data-job-id]").forEach(function (box) {
    var state = box.getAttribute("data-job-state");
    if (state === "queued" || state === "running") { watch(box); }
  });
})();
