// The cluster page's plot: its Bokeh document, fetched as JSON and embedded.
(() => {
  const target = document.getElementById("cluster-plot");
  fetch(target.dataset.plot, { headers: { Accept: "application/json" } })
    .then((response) => response.json())
    .then((body) => Bokeh.embed.embed_item(body.item, "cluster-plot"));
})();
