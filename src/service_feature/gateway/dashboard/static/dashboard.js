// Service Feature dashboard: keeps the page's `data-live` regions current without a reload.
// The page is fetched again and each region whose HTML changed is swapped in (parsed by DOMParser, so
// nothing in it runs). When the server's event stream answers, every event triggers a fetch at once and
// a slow timer remains for what has no event (the kill switch); otherwise a timer polls every 2 seconds.
(function () {
  "use strict";

  var FAST = 2000;
  var SLOW = 5000;
  var interval = FAST;
  var timer = null;
  var busy = false;
  var again = false;
  var seen = new Map();

  function regions() {
    return document.querySelectorAll("[data-live]");
  }

  function remember() {
    regions().forEach(function (region) {
      seen.set(region.id, region.outerHTML);
    });
  }

  function swap(fresh) {
    regions().forEach(function (region) {
      var next = fresh.getElementById(region.id);
      if (!next || seen.get(region.id) === next.outerHTML) {
        return;
      }
      var active = document.activeElement;
      if (active && region.contains(active) && active.matches("input, textarea, select")) {
        return; // someone is typing here: keep their text, catch up on the next change
      }
      seen.set(region.id, next.outerHTML);
      region.replaceWith(document.importNode(next, true));
    });
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html) {
          swap(new DOMParser().parseFromString(html, "text/html"));
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
        refreshExecutions();
      });
  }

  function schedule(every) {
    interval = every;
    if (timer) {
      window.clearInterval(timer);
    }
    timer = window.setInterval(function () {
      if (!document.hidden) {
        refresh();
      }
    }, interval);
  }

  function listen(url) {
    if (!url || !window.EventSource) {
      return;
    }
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      schedule(SLOW);
    });
    source.addEventListener("status", refresh);
    source.addEventListener("end", function () {
      source.close(); // the feature ended: nothing more will come, the slow timer stays for the banner
      refresh();
    });
    source.addEventListener("error", function () {
      schedule(FAST);
      if (source.readyState === EventSource.CLOSED) {
        source.close(); // no stream here (yet): polling it is
      }
    });
  }

  // The running executions, where this process runs the executor (embedded) and the key may read them.
  var executionsGone = false;
  function refreshExecutions() {
    var panel = document.getElementById("executions");
    if (!panel || executionsGone) {
      return;
    }
    fetch("/api/v1/executions/active", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 404 || response.status === 403) {
          executionsGone = true; // no executor here, or not for this key
        }
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (!body) {
          return;
        }
        var list = document.getElementById("executions-list");
        var items = (body.executions || []).map(function (run) {
          var item = document.createElement("li");
          var link = document.createElement("a");
          link.href = "/features/" + encodeURIComponent(run.execution_id);
          link.textContent = run.execution_id;
          item.appendChild(link);
          item.appendChild(document.createTextNode(" " + run.phase + ", " + Math.round(run.elapsed_seconds) + " s"));
          return item;
        });
        list.replaceChildren.apply(list, items);
        document.getElementById("executions-empty").hidden = items.length > 0;
        panel.hidden = false;
      })
      .catch(function () {});
  }

  function start() {
    if (!regions().length) {
      return;
    }
    remember();
    schedule(FAST);
    listen(document.body.dataset.stream);
    refreshExecutions();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
