// The queue page's behaviour beyond htmx:
//  - live rows: the socket's out-of-band rows are upserts (an incoming row
//    replaces the copy with its id; a data-gone row only removes it), then
//    each table is put back in urgency order, the order the server sorts by;
//  - re-sync: on every socket (re)open the lane's table is fetched again, so
//    a change made while the socket was down is not missed;
//  - tickers for age, SLA countdowns and undo windows;
//  - the keyboard: j/k move, a approve, r reject, e edit, x select, Enter open
//    (on the shadow lane a and r are would-approve and would-reject);
//  - the preview pane: the focused row's preview, fetched from the pane's
//    data-url with the row's id (the server escapes it and applies the reach rule);
//  - triage: rows the socket adds are highlighted as new, and marked when
//    they do not match the filters in the URL; "select all eligible".
(function () {
  "use strict";

  var focusedId = null; // the row to keep focused across swaps
  var checkedIds = []; // selections to keep across a re-sync
  var freshIds = []; // rows the socket just added, not replaced
  var neighbourId = null; // where focus goes if the row being decided leaves
  var resyncWaiting = false; // a re-sync held back while the lead types a reason
  var resyncInFlight = false; // the lane's table is being fetched again
  var replay = []; // pushes that arrived meanwhile, to apply over the answer
  var shownIds = []; // the lane's rows before a re-sync swaps it

  function rowsOf(tbody) {
    return Array.prototype.filter.call(tbody.children, function (tr) { return tr.classList.contains("row"); });
  }

  function num(value, missing) {
    return value === undefined || value === "" ? missing : parseFloat(value);
  }

  // Mirrors approvals.reads.queue.queue_for: escalated, priority desc, SLA deadline
  // (none last), age, id.
  function byUrgency(a, b) {
    var x = a.dataset, y = b.dataset;
    return (num(y.escalated, 0) - num(x.escalated, 0)) ||
      (num(y.priority, 0) - num(x.priority, 0)) ||
      (num(x.sla, Infinity) - num(y.sla, Infinity)) ||
      (num(x.created, 0) - num(y.created, 0)) ||
      (a.id < b.id ? -1 : 1);
  }
  function byNewest(a, b) { return (num(b.dataset.created, 0) - num(a.dataset.created, 0)) || (a.id < b.id ? -1 : 1); }
  function byDeadline(a, b) { return (num(a.dataset.deadline, 0) - num(b.dataset.deadline, 0)) || (a.id < b.id ? -1 : 1); }
  var ORDERS = { "pending-rows": byUrgency, "shadow-rows": byNewest, "veto-rows": byDeadline };
  // The sorts of approvals.reads.queue_filters.ORDERINGS, for a pending table sorted otherwise.
  function byOldest(a, b) { return (num(a.dataset.created, 0) - num(b.dataset.created, 0)) || (a.id < b.id ? -1 : 1); }
  var SORTS = {
    newest: byNewest,
    oldest: byOldest,
    amount: function (a, b) { return (num(b.dataset.amount, -Infinity) - num(a.dataset.amount, -Infinity)) || byOldest(a, b); },
    confidence: function (a, b) { return (num(a.dataset.confidence, Infinity) - num(b.dataset.confidence, Infinity)) || byOldest(a, b); },
  };

  function arrange(tbody) {
    var order = SORTS[tbody.dataset.sort] || ORDERS[tbody.id];
    if (!order) { return; }
    var rows = rowsOf(tbody);
    var sorted = rows.slice().sort(order);
    var moved = sorted.some(function (row, i) { return row !== rows[i]; });
    var active = document.activeElement;
    if (moved) {
      var empty = tbody.querySelector(".empty-row");
      sorted.forEach(function (row) { tbody.insertBefore(row, empty); });
      if (active && active !== document.activeElement && document.contains(active)) { active.focus(); }
    }
    dropOutsideWindow(tbody, sorted);
    var emptyRow = tbody.querySelector(".empty-row");
    if (emptyRow) { emptyRow.hidden = rowsOf(tbody).length > 0; }
  }

  // A page shows one window of the order: a new row that sorts past its
  // last row (when later pages exist) or before its first (on a later
  // page) belongs to another page.
  function dropOutsideWindow(tbody, sorted) {
    var more = tbody.dataset.more === "1";
    var later = num(tbody.dataset.page, 1) > 1;
    freshIds.forEach(function (id) {
      var row = document.getElementById(id);
      var index = sorted.indexOf(row);
      if (index < 0 || sorted.length < 2) { return; }
      if ((more && index === sorted.length - 1) || (later && index === 0)) { row.remove(); }
    });
  }

  function arrangeAll() {
    Object.keys(ORDERS).forEach(function (id) {
      var tbody = document.getElementById(id);
      if (tbody) { arrange(tbody); }
    });
    freshIds.forEach(markFresh);
    freshIds = [];
    Object.keys(markedIds).forEach(markFresh);
    restoreFocus();
    tick();
  }

  // After a swap took the focused row (re-rendered or gone), focus it
  // again, or the neighbour it had when its form was sent.
  function restoreFocus() {
    var active = document.activeElement;
    if (!focusedId || (active && active !== document.body)) { return; }
    var row = document.getElementById(focusedId) || (neighbourId && document.getElementById(neighbourId));
    if (row) { row.focus({ preventScroll: true }); }
  }

  // Upsert before htmx inserts the socket's rows. While a re-sync is in
  // flight, keep a copy of each pushed part to apply again over its answer,
  // which may have been rendered before the push and would wipe it.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target, fragment = event.detail.fragment;
    if (resyncInFlight && fragment && (ORDERS[target.id] || target.id === "queue-counters")) {
      Array.prototype.forEach.call(fragment.children, function (part) {
        replay.push({ into: target.id, part: part.cloneNode(true) });
      });
    }
    if (!ORDERS[target.id] || !fragment) { return; }
    Array.prototype.slice.call(fragment.children).forEach(function (incoming) {
      var existing = incoming.id && document.getElementById(incoming.id);
      if (incoming.hasAttribute("data-gone")) {
        // This lead's own decision may be in flight from the row: htmx drops
        // an answer whose target is gone, message and all, so let the answer
        // remove the row instead.
        if (existing && !existing.querySelector(".htmx-request")) { existing.remove(); }
        incoming.remove();
      } else if (existing && existing.querySelector("details[open]")) {
        incoming.remove(); // the lead is typing a reason in it: keep theirs
      } else if (existing) {
        keepSelection(existing, incoming);
        existing.remove();
      } else {
        freshIds.push(incoming.id);
      }
    });
  });

  function keepSelection(from, to) {
    var was = from.querySelector("input[name=action]"), box = to.querySelector("input[name=action]");
    if (was && box) { box.checked = was.checked; }
  }

  document.addEventListener("htmx:wsAfterMessage", arrangeAll);
  document.addEventListener("htmx:afterSettle", function () {
    arrangeAll();
    if (resyncWaiting && !document.querySelector("#lane details[open]")) {
      resyncWaiting = false; // the form left with its row
      resync();
    }
  });

  // ---------------------------------------------------------------- re-sync

  // Every open re-syncs, the first one too: it closes the gap between the
  // page's render and the socket joining its groups.
  function resync() {
    var lane = document.getElementById("lane");
    if (lane) { htmx.trigger(lane, "queue-resync"); }
  }
  document.addEventListener("htmx:wsOpen", resync);

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.id === "lane") { resyncInFlight = true; replay = []; }
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target.id !== "lane") { return; }
    resyncInFlight = false;
    // A lead typing a reason keeps their form: the re-sync waits until it closes.
    if (document.querySelector("#lane details[open]")) {
      event.detail.shouldSwap = false;
      resyncWaiting = true;
      return;
    }
    checkedIds = Array.prototype.map.call(
      document.querySelectorAll("#lane input[name=action]:checked"), function (box) { return box.value; });
    shownIds = Array.prototype.map.call(document.querySelectorAll("#lane tr.row"), function (row) { return row.id; });
  });
  document.addEventListener("toggle", function (event) {
    if (resyncWaiting && !event.target.open && !document.querySelector("#lane details[open]")) {
      resyncWaiting = false;
      resync();
    }
  }, true);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id !== "lane") { return; }
    checkedIds.forEach(function (value) {
      var box = document.querySelector('#lane input[name=action][value="' + value + '"]');
      if (box) { box.checked = true; }
    });
    replay.forEach(applyAgain);
    replay = [];
    // A row the re-sync brought that the page did not show is as new as a pushed one.
    document.querySelectorAll("#lane tr.row").forEach(function (row) {
      if (shownIds.indexOf(row.id) < 0 || markedIds[row.id]) { markFresh(row.id); }
    });
    shownIds = [];
  });

  // A pushed part, applied again by hand (htmx would not: its swap is done).
  function applyAgain(item) {
    var part = item.part;
    var existing = part.id && document.getElementById(part.id);
    if (part.hasAttribute("data-gone")) {
      if (existing) { existing.remove(); }
      return;
    }
    if (existing) {
      existing.replaceWith(part);
    } else {
      var tbody = document.getElementById(item.into);
      if (!tbody) { return; }
      tbody.insertBefore(part, tbody.querySelector(".empty-row"));
    }
    htmx.process(part);
  }

  document.addEventListener("focusin", function (event) {
    var row = event.target.closest && event.target.closest("tr.row");
    focusedId = row ? row.id : null;
  });

  // ---------------------------------------------------------------- live rows and filters

  // A row the socket added: highlighted as new and, when the queue is
  // filtered, checked against the filters the page can read off the row
  // (agent, type, risk, SLA). A search cannot be checked here: the row says so.
  var markedIds = {}; // rows marked new: a re-render (push or re-sync) keeps the mark
  function markFresh(id) {
    var row = document.getElementById(id);
    if (!row || row.classList.contains("fresh")) { return; }
    markedIds[id] = true;
    row.classList.add("fresh");
    var note = document.createElement("span");
    note.className = "fresh-note";
    var mismatch = filterMismatch(row);
    note.textContent = mismatch ? "New, outside your filter (" + mismatch + ")" : "New";
    if (mismatch) { row.classList.add("outside-filter"); }
    var cell = row.querySelector("td.effect") || row.cells[0];
    if (cell) { cell.appendChild(note); }
  }

  function filterMismatch(row) {
    var form = document.querySelector("form.filters");
    if (!form || form.dataset.active !== "1") { return ""; }
    var wanted = form.dataset, got = row.dataset;
    if (wanted.agent && wanted.agent !== got.agent) { return "agent"; }
    if (wanted.type && wanted.type !== got.type) { return "action type"; }
    if (wanted.risk && wanted.risk !== got.risk) { return "risk"; }
    if (wanted.sla) {
      var left = num(got.sla, Infinity) - Date.now() / 1000;
      var state = row.classList.contains("escalated") && wanted.sla === "escalated" ? "escalated" :
        left < 0 ? "overdue" : left < 3600 ? "due_soon" : "on_time";
      if (state !== wanted.sla) { return "SLA"; }
    }
    if (wanted.q) { return "search not checked"; }
    return "";
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.select-eligible");
    if (!button) { return; }
    document.querySelectorAll("#pending-rows input[name=action]").forEach(function (box) { box.checked = true; });
  });

  function revealSelectEligible() {
    var button = document.querySelector("button.select-eligible");
    if (button) { button.hidden = !document.querySelector("#pending-rows input[name=action]"); }
  }

  // ---------------------------------------------------------------- preview pane

  var previewShown = null, previewWanted = null, previewTimer = null;

  function previewUrl(pane, row) {
    var id = row.id.replace(/^action-/, "");
    return /^[0-9a-f-]{36}$/.test(id) ? pane.dataset.url.replace("00000000-0000-0000-0000-000000000000", id) : null;
  }

  function showPreview(row, again) {
    var pane = document.getElementById("preview-pane");
    var url = pane && row && previewUrl(pane, row);
    if (!url || (previewWanted === row.id && !again)) { return; }
    previewWanted = row.id;
    clearTimeout(previewTimer);
    // Holding j down asks for the row the lead stops on, not every row passed.
    previewTimer = setTimeout(function () { fetchPreview(pane, row.id, url); }, 60);
  }

  function fetchPreview(pane, id, url) {
    pane.setAttribute("aria-busy", "true");
    fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : Promise.reject(response.status);
    }).then(function (html) {
      if (previewWanted !== id) { return; } // the lead moved on meanwhile
      pane.innerHTML = html;
      pane.dataset.action = id;
      pane.classList.remove("asking");
      previewShown = id;
      pane.removeAttribute("aria-busy");
    }).catch(function () {
      if (previewWanted !== id) { return; }
      pane.removeAttribute("aria-busy");
      pane.innerHTML = "";
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = "This action is no longer in your queue.";
      pane.appendChild(p);
      previewShown = id;
    });
  }

  document.addEventListener("focusin", function (event) {
    var row = event.target.closest && event.target.closest("#lane tr.row");
    if (row) { showPreview(row); }
  });

  function previewFirst() {
    if (previewShown || previewWanted) { return; }
    var first = document.querySelector("#lane tr.row");
    if (first) { showPreview(first); }
  }

  // ---------------------------------------------------------------- tickers

  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d) { return d + "d " + h + "h"; }
    if (h) { return h + "h " + (m < 10 ? "0" : "") + m + "m"; }
    if (m >= 10) { return m + "m"; }
    return m + "m " + (s < 10 ? "0" : "") + s + "s";
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("time[data-since]").forEach(function (el) {
      el.textContent = span(now - num(el.dataset.since, now));
    });
    document.querySelectorAll("#pending-rows time[data-deadline]").forEach(function (el) {
      var left = num(el.dataset.deadline, now) - now;
      el.textContent = left >= 0 ? "in " + span(left) : "overdue " + span(-left);
      el.closest("tr").classList.toggle("overdue", left < 0);
    });
    document.querySelectorAll("#veto-rows time[data-deadline]").forEach(function (el) {
      var left = num(el.dataset.deadline, now) - now;
      var row = el.closest("tr");
      el.textContent = left >= 0 ? span(left) : "now";
      if (left < 0 && !row.classList.contains("closed")) {
        row.classList.add("closed"); // the window closed: dispatch takes it from here
        row.querySelectorAll("button, input").forEach(function (control) { control.disabled = true; });
      }
    });
  }

  // ---------------------------------------------------------------- keyboard

  function visibleRows() {
    return Array.prototype.filter.call(document.querySelectorAll("#lane tr.row"), function (row) {
      return !row.hidden && !row.classList.contains("closed");
    });
  }

  function currentRow() {
    var active = document.activeElement;
    return active && active.closest ? active.closest("#lane tr.row") : null;
  }

  function move(step) {
    var rows = visibleRows();
    if (!rows.length) { return; }
    var index = rows.indexOf(currentRow());
    var next = index < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, index + step));
    rows[next].focus();
    rows[next].scrollIntoView({ block: "nearest" });
  }

  // A row's form is on its way: if the row leaves, the lead keeps their
  // place on its neighbour.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var row = event.detail.elt.closest && event.detail.elt.closest("#lane tr.row");
    if (!row) { return; }
    var rows = visibleRows();
    var index = rows.indexOf(row);
    var neighbour = rows[index + 1] || rows[index - 1];
    focusedId = row.id;
    neighbourId = neighbour ? neighbour.id : null;
  });

  function submit(form) {
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  var KEYS = {
    j: function () { move(1); },
    k: function () { move(-1); },
    a: function (row) {
      // Never blind: until the pane shows this row's preview, `a` only brings it up.
      var pane = document.getElementById("preview-pane");
      if (row && pane && pane.dataset.action !== row.id) {
        showPreview(row, true);
        pane.classList.add("asking");
        return;
      }
      var form = row && row.querySelector("form.approve");
      var wouldApprove = row && row.querySelector("form.mark button[value=approve]");
      if (form) { submit(form); } else if (wouldApprove) { wouldApprove.click(); }
    },
    r: function (row) {
      var details = row && row.querySelector("details.reject");
      var wouldReject = row && row.querySelector("form.mark button[value=reject]");
      if (details) {
        details.open = true;
        details.querySelector("input[name=reason]").focus();
      } else if (wouldReject) {
        wouldReject.click();
      }
    },
    e: function (row) {
      var link = row && row.querySelector("a.edit");
      if (link) { window.location.href = link.href; }
    },
    x: function (row) {
      var box = row && row.querySelector("input[name=action]");
      if (box) { box.checked = !box.checked; }
    },
  };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target.matches("input[name=reason]") && event.key === "Escape") {
      var row = target.closest("tr.row");
      target.closest("details").open = false;
      if (row) { row.focus(); }
      return;
    }
    if (target.matches("input, textarea, select, [contenteditable]")) { return; }
    if (event.key === "Enter" && target.matches("tr.row")) {
      var open = target.querySelector("a.open");
      if (open) { window.location.href = open.href; }
      return;
    }
    var handler = KEYS[event.key];
    if (!handler || !document.getElementById("lane")) { return; }
    event.preventDefault();
    handler(currentRow());
  });

  document.addEventListener("htmx:afterSettle", revealSelectEligible);
  tick();
  revealSelectEligible();
  previewFirst();
  setInterval(tick, 1000);
})();
