// The comparison page: x by step or time, log y, smoothing, and one session
// highlighted everywhere when its line or its row is hovered.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("compare-data").textContent);

  function models(prefix) {
    const found = [];
    for (const doc of Bokeh.documents) {
      for (const model of doc.all_models) {
        if (model.name && model.name.startsWith(prefix)) found.push(model);
      }
    }
    return found;
  }

  let xMode = "step";
  let weight = 0;

  function setX(mode) {
    xMode = mode;
    for (const source of models("source:")) {
      source.data = { ...source.data, x: source.data[mode] };
    }
    for (const plot of models("figure:")) {
      for (const axis of plot.below) axis.axis_label = mode === "step" ? "step" : "seconds";
    }
  }

  function setLog(on) {
    for (const plot of models("figure:")) {
      plot.visible = plot.name.endsWith(on ? ":log" : ":linear");
    }
  }

  // Exponential moving average, debiased as TensorBoard's smoothing is.
  function smoothed(raw) {
    const y = new Array(raw.length);
    let last = 0;
    let debias = 1;
    for (let i = 0; i < raw.length; i++) {
      last = last * weight + (1 - weight) * raw[i];
      debias *= weight;
      y[i] = weight === 0 ? raw[i] : last / (1 - debias);
    }
    return y;
  }

  function smooth(value) {
    weight = value;
    for (const source of models("source:")) {
      source.data = { ...source.data, y: smoothed(source.data.raw) };
    }
  }

  // Zooming (by step) fetches the finer lines of the range shown (zoom.js).
  window.podiumZoomer(
    config.lines,
    (tag, body) => {
      const byIdent = Object.fromEntries(body.lines.map((line) => [line.session, line]));
      for (const ident of config.sessions) {
        const line = byIdent[ident] || { step: [], value: [], wall_time: [], first_wall_time: 0 };
        const time = line.wall_time.map((wall) => wall - line.first_wall_time);
        const data = {
          step: line.step,
          time: time,
          x: xMode === "step" ? line.step : time,
          raw: line.value,
          y: smoothed(line.value),
          session: line.step.map(() => ident),
        };
        for (const axis of ["linear", "log"]) {
          for (const doc of Bokeh.documents) {
            const source = doc.get_model_by_name("source:" + ident + ":" + tag + ":" + axis);
            if (source) source.data = { ...data };
          }
        }
      }
    },
    () => xMode === "step",
  );

  let highlighted = null;
  window.podiumHighlight = function (ident) {
    if (ident === highlighted) return;
    highlighted = ident;
    for (const line of models("line:")) {
      const mine = ident !== null && line.name === "line:" + ident;
      line.glyph.line_width = mine ? 4 : 2;
      line.glyph.line_alpha = ident === null || mine ? 1 : 0.25;
    }
    for (const row of document.querySelectorAll("#arguments tbody tr")) {
      row.classList.toggle("highlighted", row.dataset.session === ident);
    }
  };

  for (const row of document.querySelectorAll("#arguments tbody tr")) {
    row.addEventListener("mouseenter", () => window.podiumHighlight(row.dataset.session));
    row.addEventListener("mouseleave", () => window.podiumHighlight(null));
  }
  document.getElementById("plot").addEventListener("mouseleave", () => window.podiumHighlight(null));

  // Sortable columns: numbers as numbers, the rest as text.
  for (const header of document.querySelectorAll("table.sortable th")) {
    header.addEventListener("click", () => {
      const table = header.closest("table");
      const index = Array.from(header.parentNode.children).indexOf(header);
      const ascending = header.dataset.order !== "asc";
      header.dataset.order = ascending ? "asc" : "desc";
      const rows = Array.from(table.tBodies[0].rows);
      const key = (row) => row.cells[index].textContent.trim();
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const nx = parseFloat(x), ny = parseFloat(y);
        const order = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      for (const row of rows) table.tBodies[0].appendChild(row);
    });
  }

  document.getElementById("x-axis").addEventListener("change", (e) => setX(e.target.value));
  document.getElementById("log-y").addEventListener("change", (e) => setLog(e.target.checked));
  const slider = document.getElementById("smoothing");
  slider.addEventListener("input", () => {
    document.getElementById("smoothing-value").textContent = slider.value;
    smooth(parseFloat(slider.value));
  });

  async function embed() {
    if (!config.tags.length) return;
    const response = await fetch(config.plot, { headers: { Accept: "application/json" } });
    await Bokeh.embed.embed_item(await response.json(), "plot");
    document.getElementById("plot").dataset.ready = "1";
  }
  embed();
})();

// The table's metric and direction apply as soon as they are picked.
for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.submit());
}
