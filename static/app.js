// Comfort only: every page works without this file.
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var field = document.querySelector(button.getAttribute("data-copy"));
    var status = document.querySelector("[data-copy-status]");
    if (!field || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(field.value).then(function () {
        button.textContent = "Copied";
        if (status) status.textContent = "The key is on your clipboard.";
      }, function () {
        field.select();
        if (status) status.textContent = "Select the key and copy it with Ctrl+C or ⌘C.";
      });
    });
  });
  document.querySelectorAll("[data-select-on-focus]").forEach(function (el) {
    el.addEventListener("focus", function () { el.select(); });
  });
})();
