// The session page: follows the log, the state and the set of reported tags.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("session-data").textContent);
  const log = document.getElementById("log");
  const statusBadge = document.getElementById("status");
  let after = config.after;
  let tags = config.tags.join("\n");
  let active = config.active;

  // A plot is replaced when new tags appear and when the session ends: the old one's
  // data sources must stop polling and its views go, not only its elements.
  function dropPlots() {
    for (const doc of Bokeh.documents) {
      for (const model of doc.all_models) {
        if ("polling_interval" in model && model.interval != null) {
          clearInterval(model.interval);
          model.interval = null;
        }
      }
      doc.clear();
    }
    Bokeh.documents.length = 0;
  }

  async function embedPlot() {
    const response = await fetch(config.plot, { headers: { Accept: "application/json" } });
    const item = await response.json();
    if (!item) return;
    dropPlots();
    document.getElementById("plot").innerHTML = "";
    await Bokeh.embed.embed_item(item, "plot");
  }

  function setText(id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = value === null || value === undefined ? "—" : value;
  }

  async function poll() {
    const response = await fetch(config.live + "?after=" + after, {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    const body = await response.json();
    if (body.lines.length) {
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.append(body.lines.map((line) => line.text + "\n").join(""));
      after = body.lines[body.lines.length - 1].seq;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
    const session = body.session;
    statusBadge.textContent = session.status;
    statusBadge.className = "status status-" + session.status;
    setText("status-reason", session.status_reason);
    setText("started", session.started_at);
    setText("ended", session.ended_at);
    setText("exit-code", session.exit_code);
    const nowActive = ["pending", "scheduled", "running"].includes(session.status);
    const newTags = body.tags.join("\n");
    if (newTags !== tags || (active && !nowActive)) {
      tags = newTags;
      await embedPlot();
    }
    active = nowActive;
    return nowActive || body.lines.length > 0;
  }

  async function loop() {
    let keepGoing = true;
    try {
      keepGoing = await poll();
    } catch (error) {
      console.warn("podium: poll failed", error);
    }
    if (keepGoing) setTimeout(loop, 1000);
  }

  log.scrollTop = log.scrollHeight;
  if (tags) embedPlot();
  if (active) loop();
})();
