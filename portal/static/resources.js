// The session page's resources: its node's samples as plots that grow while it runs
// (each poll swaps the downsampled lines into the plots' sources), with the averages.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("session-data").textContent);
  const summary = document.getElementById("resources-summary");
  const holder = document.getElementById("resources-plot");
  let doc = null;
  let names = "";

  function describe(body) {
    const parts = [];
    if (body.gpus.length) {
      if (body.simulated_gpus) {
        parts.push("Its GPUs are simulated: they report no utilisation.");
      } else if (body.average_gpu_utilization !== null) {
        parts.push("Average GPU utilisation " + body.average_gpu_utilization.toFixed(1) + "%");
        if (body.gpu_memory_peak_mb !== null) {
          parts.push("peak GPU memory " + body.gpu_memory_peak_mb + " MiB");
        }
      } else {
        parts.push("No GPU reading yet.");
      }
    }
    if (body.average_cpu_percent !== null) {
      parts.push("average CPU " + body.average_cpu_percent.toFixed(0) + "% of a core");
    }
    if (body.memory_peak_mb !== null && body.samples) {
      parts.push("peak memory " + Math.round(body.memory_peak_mb) + " MiB");
    }
    if (body.samples) parts.push(body.samples + " samples");
    return parts.join(" · ");
  }

  async function embed() {
    const response = await fetch(config.resources + "?item=1", {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return null;
    const body = await response.json();
    if (!body.item) return body;
    holder.innerHTML = "";
    if (doc !== null) {
      doc.clear();
      Bokeh.documents.splice(Bokeh.documents.indexOf(doc), 1);
    }
    const before = new Set(Bokeh.documents);
    await Bokeh.embed.embed_item(body.item, "resources-plot");
    doc = Bokeh.documents.find((d) => !before.has(d)) || null;
    names = Object.keys(body.series).sort().join("\n");
    return body;
  }

  async function poll() {
    let body;
    const response = await fetch(config.resources, { headers: { Accept: "application/json" } });
    if (!response.ok) return true;
    body = await response.json();
    const now = Object.keys(body.series).sort().join("\n");
    if (doc === null || now !== names) {
      body = (await embed()) || body;
    } else {
      for (const [name, line] of Object.entries(body.series)) {
        const source = doc.get_model_by_name("resource:" + name);
        if (source) source.data = { t: line.t, value: line.value };
      }
    }
    summary.textContent = describe(body);
    return ["pending", "scheduled", "running"].includes(body.status);
  }

  async function loop() {
    let keepGoing = true;
    try {
      keepGoing = await poll();
    } catch (error) {
      console.warn("podium: resources poll failed", error);
    }
    if (keepGoing) setTimeout(loop, 5000);
  }

  loop();
})();
