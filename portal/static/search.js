// A search's page: its curves and parallel coordinates, one Bokeh document fetched as
// JSON and embedded.
(() => {
  const target = document.getElementById("search-plot");
  if (!target || target.querySelector(".empty")) return;
  fetch(target.dataset.plot, { headers: { Accept: "application/json" } })
    .then((response) => response.json())
    .then((item) => Bokeh.embed.embed_item(item, "search-plot"));
})();
