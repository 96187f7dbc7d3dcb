// ui.js: the only script of tasker's web UI (no dependencies). The pages are rendered on the server and work
// without it; it makes them live: it listens to the server's event stream (/events) and, when a change concerns
// the page, fetches the page again and swaps its main part in (at most once per half second). It also opens a
// step's panel without reloading the graph, and submits the list's filter when a choice changes.
(function () {
  "use strict";
  var body = document.body, watch = body.dataset.watch || "", live = document.getElementById("live");
  var timer = null, busy = false, again = false, opened = false;

  // wanted says whether a change ("task ns/name", "pool ns/name", "all") concerns this page.
  function wanted(change) {
    if (change === "all") return true;
    if (watch === "task" || watch === "pool" || watch === "crontask") return change.indexOf(watch + " ") === 0;
    return change === watch;
  }

  function schedule() {
    if (!timer) timer = setTimeout(refresh, 500);
  }

  function refresh() {
    timer = null;
    if (busy) { again = true; return; }
    busy = true;
    swap(location.href).finally(function () {
      busy = false;
      if (again) { again = false; schedule(); }
    });
  }

  // swap fetches url and replaces the page's main part with the new one, keeping the graph's scroll position.
  function swap(url) {
    return fetch(url, { headers: { Accept: "text/html" } }).then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var next = doc.getElementById("main"), main = document.getElementById("main");
      if (!next || !main) return;
      var g = document.getElementById("graph"), x = g ? g.scrollLeft : 0, y = g ? g.scrollTop : 0;
      main.replaceChildren.apply(main, Array.prototype.slice.call(next.childNodes));
      g = document.getElementById("graph");
      if (g) { g.scrollLeft = x; g.scrollTop = y; }
      document.title = doc.title;
      body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
    }).catch(function () { /* the next change or reconnection tries again */ });
  }

  // openStep shows a step's panel (the server renders it) and marks its box.
  function openStep(step) {
    var panel = document.getElementById("panel");
    fetch(location.pathname + "/steps/" + encodeURIComponent(step)).then(function (r) { return r.text(); }).then(function (html) {
      panel.innerHTML = html;
      document.querySelectorAll("#dag .node.sel").forEach(function (n) { n.classList.remove("sel"); });
      document.querySelectorAll("#dag .node").forEach(function (n) { if (n.dataset.step === step) n.classList.add("sel"); });
      history.replaceState(null, "", "?step=" + encodeURIComponent(step));
    });
  }

  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[data-step]");
    if (!a || !document.getElementById("panel") || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    openStep(a.dataset.step);
  });

  document.addEventListener("change", function (e) {
    var form = e.target.closest && e.target.closest("form.filter");
    if (form) form.submit();
  });

  // The time to the first frame painted with the whole graph (docs/ui.md reports it for 1,000 steps).
  if (document.getElementById("dag") && window.performance && performance.mark) {
    requestAnimationFrame(function () { requestAnimationFrame(function () { performance.mark("tasker-graph-drawn"); }); });
  }

  if (watch && window.EventSource) {
    var es = new EventSource("/events");
    es.onopen = function () {
      live.textContent = "● live";
      live.className = "live on";
      if (opened) schedule(); // changes may have been missed while disconnected
      opened = true;
    };
    es.onerror = function () {
      live.textContent = "○ reconnecting";
      live.className = "live";
    };
    es.onmessage = function (e) { if (wanted(e.data)) schedule(); };
  }
})();
