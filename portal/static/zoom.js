// Zooming a plot of steps: each figure's x range and reset call `podiumZoom(tag, start,
// end)` (portal/web/plots.py). After 250 ms without another change, `url` (a URL with
// its query) is asked for the tag's lines within [start, end] (the whole lines after a
// reset), and `apply(tag, body)` draws them; only the newest answer for a tag is drawn.
// `allowed()` may hold a zoom back (the comparison by time: its ranges are not steps).
window.podiumZoomer = function (url, apply, allowed) {
  "use strict";
  const timers = {};
  const asked = {};

  async function zoom(tag, start, end) {
    const mine = (asked[tag] || 0) + 1;
    asked[tag] = mine;
    const query = new URLSearchParams({ tag: tag });
    if (start !== null) {
      query.set("start", Math.floor(start));
      query.set("end", Math.ceil(end));
    }
    const response = await fetch(url + (url.includes("?") ? "&" : "?") + query, {
      headers: { Accept: "application/json" },
    });
    if (!response.ok || asked[tag] !== mine) return;
    apply(tag, await response.json());
    document.getElementById("plot").dataset.zoomed =
      start === null ? "whole" : Math.floor(start) + "-" + Math.ceil(end);
  }

  window.podiumZoom = function (tag, start, end) {
    if (start !== null && allowed && !allowed()) return;
    clearTimeout(timers[tag]);
    timers[tag] = setTimeout(() => zoom(tag, start, end), start === null ? 0 : 250);
  };
};
