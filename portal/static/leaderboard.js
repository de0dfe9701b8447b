// The live leaderboard: the portal pushes the board (server-sent events) whenever a
// submission is scored; the table is redrawn and the history plot fetched again.
(function () {
  "use strict";
  const table = document.getElementById("leaderboard");
  if (!table) return;
  const body = table.querySelector("tbody");
  const total = document.getElementById("board-total");
  const state = document.getElementById("live-state");
  let version = Number(table.dataset.version);
  let plotTimer = null;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  // As the portal writes times: relative, the UTC time on hover.
  const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  const UNITS = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  function when(iso) {
    const td = cell("", "when wide");
    if (!iso) return td;
    const seconds = (Date.parse(iso) - Date.now()) / 1000;
    const time = document.createElement("time");
    time.dateTime = iso;
    time.title = iso.replace("T", " ").replace("Z", "") + " UTC";
    const unit = UNITS.find(([, size]) => Math.abs(seconds) >= size);
    time.textContent = unit ? relative.format(Math.round(seconds / unit[1]), unit[0]) : "just now";
    td.append(time);
    return td;
  }

  function team(row) {
    const td = cell(row.team);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = row.color || "";
    td.prepend(swatch);
    return td;
  }

  function draw(board) {
    const rows = board.rows.map(function (row) {
      const tr = document.createElement("tr");
      tr.append(
        cell(String(row.rank)),
        team(row),
        cell(row.score.toFixed(5)),
        cell(String(row.submissions), "wide"),
        when(row.last_submission_at),
      );
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell("No scored submission yet.");
      td.colSpan = 5;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
    total.textContent = board.total + " teams on the board.";
    table.dataset.version = String(board.version);
  }

  function loadPlot() {
    fetch(table.dataset.history, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (item) {
        const target = document.getElementById("history-plot");
        if (window.Bokeh && Bokeh.documents) {
          Bokeh.documents.slice().forEach(function (doc) { doc.clear(); });
          Bokeh.documents.length = 0;
        }
        target.replaceChildren();
        Bokeh.embed.embed_item(item, "history-plot");
      });
  }

  loadPlot();
  if (!table.dataset.stream) return; // a later page, or an ended round: not live
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("board", function (event) {
    const board = JSON.parse(event.data);
    if (board.version === version && body.children.length) return;
    version = board.version;
    draw(board);
    clearTimeout(plotTimer);
    plotTimer = setTimeout(loadPlot, 300); // a burst of scores redraws the plot once
  });
  source.onopen = function () { state.classList.remove("offline"); state.textContent = "live"; };
  source.onerror = function () { state.classList.add("offline"); state.textContent = "reconnecting"; };
})();
