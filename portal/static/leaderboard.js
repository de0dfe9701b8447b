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

  function draw(board) {
    const rows = board.rows.map(function (row) {
      const tr = document.createElement("tr");
      tr.append(
        cell(String(row.rank)),
        cell(row.team),
        cell(row.score.toFixed(5)),
        cell(String(row.submissions)),
        cell(row.last_submission_at || "", "when"),
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
  loadPlot();
})();
