// Keyboard-only labeling: 1-5 pick the relevance, Enter saves and opens the next item.
// In a text box, Ctrl/Cmd+Enter saves and Esc returns to the keys.
(function () {
  "use strict";
  var form = document.getElementById("label-form");
  if (!form) { return; }

  function typing(target) {
    return target && (target.tagName === "TEXTAREA" ||
      (target.tagName === "INPUT" && target.type !== "radio" && target.type !== "submit"));
  }

  function choose(value) {
    var radio = form.querySelector('input[name="score"][value="' + value + '"]');
    if (radio) { radio.checked = true; radio.focus(); }
  }

  document.addEventListener("keydown", function (event) {
    if (typing(event.target)) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        event.target.blur();
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    if (/^[1-5]$/.test(event.key)) {
      event.preventDefault();
      choose(event.key);
    } else if (event.key === "Enter") {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // Start with the keys live: nothing focused that would swallow 1-5.
  if (document.activeElement && typing(document.activeElement)) { document.activeElement.blur(); }
  form.dataset.keys = "ready"; // the keys work from here (tests wait for it)
})();
