/* tether inspector: the page's only script (hand-written, no library; part of tether, MIT).
 *
 * Progressive enhancement: every page reads with JavaScript off. This adds two things:
 * the counts by status on the sessions page, and the live timeline on a session's newest
 * page (it asks the server for the items after the last one shown, about twice a second).
 * What it inserts is HTML the server rendered with autoescape on; nothing here builds
 * markup from session data.
 */
"use strict";

(function () {
  function insertHtml(target, html, where) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    if (where === "replace") {
      target.replaceChildren(tpl.content);
    } else {
      target.appendChild(tpl.content);
    }
  }

  function loadCounts() {
    var box = document.getElementById("counts");
    if (!box || !box.dataset.src) return;
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) { if (html) insertHtml(box, html, "replace"); })
      .catch(function () { /* the counts are a convenience: the list stands without them */ });
  }

  function live() {
    var timeline = document.getElementById("timeline");
    if (!timeline || !timeline.dataset.poll) return;
    var badge = document.getElementById("live");
    var after = timeline.dataset.after;
    var version = timeline.dataset.version;
    var status = timeline.dataset.status;
    var busy = false;
    if (badge) badge.hidden = false;

    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      var url = timeline.dataset.poll + "?after=" + encodeURIComponent(after) +
        "&version=" + encodeURIComponent(version) + "&status=" + encodeURIComponent(status);
      fetch(url, { credentials: "same-origin" })
        .then(function (r) {
          if (!r.ok) throw new Error("poll " + r.status);
          if (r.headers.get("x-tether-reload") === "1") {
            window.location.reload();
            return null;
          }
          after = r.headers.get("x-tether-last-seq") || after;
          version = r.headers.get("x-tether-version") || version;
          return r.text();
        })
        .then(function (html) {
          if (!html || !html.trim()) return;
          var empty = timeline.querySelector(".empty");
          if (empty) empty.remove();
          insertHtml(timeline, html, "append");
          var last = timeline.lastElementChild;
          if (last) {
            last.classList.add("fresh");
            last.scrollIntoView({ block: "nearest" });
          }
        })
        .catch(function () { if (badge) badge.classList.add("off"); })
        .then(function () { busy = false; });
    }
    window.setInterval(tick, 500);
  }

  document.addEventListener("DOMContentLoaded", function () {
    loadCounts();
    live();
  });
})();
