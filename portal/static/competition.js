// A competition's page: the team's submissions follow the portal's server-sent events,
// each one the table's rows as the page renders them.
(function () {
  "use strict";
  const table = document.getElementById("submissions");
  if (!table || !window.EventSource) return;
  const events = new EventSource(table.dataset.stream);
  events.addEventListener("submissions", (event) => {
    table.tBodies[0].innerHTML = JSON.parse(event.data).rows;
    table.dataset.live = "1";
  });
  events.addEventListener("open", () => { table.dataset.live = "1"; });
})();
