// The session page: follows the log, the state and the set of reported tags.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("session-data").textContent);
  const log = document.getElementById("log");
  const statusBadge = document.getElementById("status");
  let after = config.after;
  let tags = config.tags.join("\n");
  let active = config.active;

  // The plot's points after `cursor` come with each poll and are streamed onto its
  // sources; it is built anew (downsampled by the portal) when new tags appear or when
  // more arrived than a page should hold.
  let cursor = null;

  // The scalars' own document: the page holds others (its resources).
  let scalarDoc = null;

  function dropPlots() {
    if (scalarDoc === null) return;
    scalarDoc.clear();
    const at = Bokeh.documents.indexOf(scalarDoc);
    if (at >= 0) Bokeh.documents.splice(at, 1);
    scalarDoc = null;
  }

  async function embedPlot() {
    const response = await fetch(config.plot, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!body) return;
    dropPlots();
    document.getElementById("plot").innerHTML = "";
    const before = new Set(Bokeh.documents);
    await Bokeh.embed.embed_item(body.item, "plot");
    scalarDoc = Bokeh.documents.find((doc) => !before.has(doc)) || null;
    cursor = body.cursor;
  }

  function streamPoints(points) {
    for (const [tag, columns] of Object.entries(points)) {
      for (const doc of scalarDoc ? [scalarDoc] : []) {
        const source = doc.get_model_by_name("scalars:" + tag);
        if (!source) continue;
        // Points the plot was built with may come again: only later steps are added.
        const steps = source.data.step;
        const last = steps.length ? steps[steps.length - 1] : -Infinity;
        const keep = columns.step.map((step, i) => (step > last ? i : -1)).filter((i) => i >= 0);
        if (keep.length) {
          source.stream({
            step: keep.map((i) => columns.step[i]),
            value: keep.map((i) => columns.value[i]),
          });
        }
      }
    }
  }

  // Zooming fetches the finer line of the range shown (zoom.js).
  window.podiumZoomer(config.line, (tag, line) => {
    for (const doc of Bokeh.documents) {
      const source = doc.get_model_by_name("scalars:" + tag);
      if (source) source.data = { step: line.step, value: line.value };
    }
  });

  function setText(id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = value === null || value === undefined ? "—" : value;
  }

  async function poll() {
    const query = "?after=" + after + (cursor === null ? "" : "&cursor=" + cursor);
    const response = await fetch(config.live + query, {
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
    if (newTags !== tags || body.refresh) {
      tags = newTags;
      await embedPlot();
    } else if (body.points && cursor !== null) {
      streamPoints(body.points);
      cursor = body.cursor;
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
