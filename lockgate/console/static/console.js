// Lockgate console: the little behaviour the pages need. No inline script anywhere (the CSP forbids it);
// everything here is progressive: every page works without it.
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  // Copy buttons: <button class="copy" data-copy="element-id">.
  function wireCopy(root) {
    root.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source) return;
        var text = source.textContent || "";
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
        } else {
          selectText(source);
        }
      });
    });
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // Forms that ask first: <form class="confirm-form" data-confirm="…">.
  function wireConfirm(root) {
    root.querySelectorAll("form.confirm-form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  // Charts: <div class="chart" data-series="url" data-kind="spend|latency">, drawn with uPlot.
  var seriesCache = {};
  function fetchSeries(url) {
    if (!seriesCache[url]) {
      seriesCache[url] = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
        if (!r.ok) throw new Error("chart data: HTTP " + r.status);
        return r.json();
      });
    }
    return seriesCache[url];
  }

  function drawCharts(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("div.chart[data-series]").forEach(function (el) {
      fetchSeries(el.getAttribute("data-series")).then(function (s) {
        var kind = el.getAttribute("data-kind");
        var width = Math.max(300, el.clientWidth || 600);
        var opts, data;
        if (kind === "latency") {
          opts = {
            width: width, height: 220,
            series: [{}, { label: "p50 ms", stroke: "#2f6fdf", spanGaps: true }, { label: "p95 ms", stroke: "#d9534f", spanGaps: true }],
            axes: [{}, { label: "ms" }],
          };
          data = [s.x, s.p50, s.p95];
        } else {
          opts = {
            width: width, height: 220,
            series: [{}, { label: "USD", stroke: "#1f8a4c", fill: "rgba(31,138,76,0.15)" }],
            axes: [{}, { label: "USD" }],
          };
          data = [s.x, s.cost_usd];
        }
        el.textContent = "";
        new uPlot(opts, data, el);
        el.setAttribute("data-drawn", "true");
      }).catch(function (err) {
        el.textContent = "The chart could not be loaded.";
        console.warn(err);
      });
    });
  }

  // Follow mode on the request log: refresh the table while the tab is visible, backing off when nothing changes
  // or a refresh fails; paused while the tab is hidden.
  function wireFollow() {
    var box = document.getElementById("follow");
    if (!box) return;
    var targetId = box.getAttribute("data-target");
    var delay = 2000, timer = null;
    var MIN = 2000, MAX = 60000;

    function schedule() {
      clearTimeout(timer);
      if (box.checked && !document.hidden) timer = setTimeout(refresh, delay);
    }
    function refresh() {
      var url = window.location.pathname + window.location.search;
      fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      }).then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(targetId), current = document.getElementById(targetId);
        if (fresh && current) {
          var changed = fresh.innerHTML !== current.innerHTML;
          if (changed) current.replaceWith(document.importNode(fresh, true));
          delay = changed ? MIN : Math.min(MAX, delay * 2);
        }
        schedule();
      }).catch(function () {
        delay = Math.min(MAX, delay * 2);
        schedule();
      });
    }
    box.addEventListener("change", function () { delay = MIN; schedule(); });
    document.addEventListener("visibilitychange", schedule);
  }

  onReady(function () {
    wireCopy(document);
    wireConfirm(document);
    drawCharts(document);
    wireFollow();
  });
})();
