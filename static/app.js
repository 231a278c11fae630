// Comfort only: every page works without this file.
(function () {
  "use strict";
  // Copy buttons: the clipboard API where the page may use it (HTTPS or localhost), else the
  // older copy command on the selected text; either way the text is left selected, so
  // Ctrl+C / ⌘C works if both fail. The label says what happened, then resets.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var field = document.querySelector(button.getAttribute("data-copy"));
    var status = document.querySelector(button.getAttribute("data-copy-status") || "[data-copy-status]");
    if (!field) return;
    var label = button.textContent;
    var timer = null;
    var text = function () { return "value" in field ? field.value : field.textContent; };
    var select = function () {
      if (field.select) { field.focus(); field.select(); return; }
      var range = document.createRange();
      range.selectNodeContents(field);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    };
    var say = function (buttonText, message) {
      button.textContent = buttonText;
      if (status) status.textContent = message;
      clearTimeout(timer);
      timer = setTimeout(function () { button.textContent = label; }, 2500);
    };
    var fallback = function () {
      select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      if (ok) say("Copied", "Copied to your clipboard.");
      else say(label, "Selected: press Ctrl+C (⌘C on a Mac) to copy.");
    };
    button.hidden = false;
    button.addEventListener("click", function () {
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text()).then(function () {
          select();
          say("Copied", "Copied to your clipboard.");
        }, fallback);
      } else {
        fallback();
      }
    });
  });
  document.querySelectorAll("[data-select-on-focus]").forEach(function (el) {
    el.addEventListener("focus", function () { el.select(); });
  });
})();
