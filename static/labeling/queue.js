/* Reviewer queue: Enter starts labeling the first open item. */
document.addEventListener("keydown", function (event) {
  var start = document.getElementById("start-labeling");
  if (event.key === "Enter" && start) { event.preventDefault(); window.location = start.href; }
});
