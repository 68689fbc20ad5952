// Live hint for new-password fields. The rules are on the page as text; this only says, as
// the user types, how the password fares against the ones a browser can check. Without
// JavaScript nothing is lost: the server checks everything (including the common-password
// list) and says why it refuses.
(function () {
  "use strict";
  var fields = document.querySelectorAll("input[data-password-hint]");
  Array.prototype.forEach.call(fields, function (input) {
    var hint = document.getElementById(input.getAttribute("data-password-hint"));
    if (!hint) { return; }
    var min = parseInt(input.getAttribute("minlength"), 10) || 8;
    var max = parseInt(input.getAttribute("maxlength"), 10) || 128;
    function contextWords() {
      var words = (input.getAttribute("data-context-values") || "").split(" ");
      (input.getAttribute("data-context-fields") || "").split(" ").forEach(function (id) {
        var other = id && document.getElementById(id);
        if (other && other.value) { words.push(other.value); }
      });
      var out = [];
      words.forEach(function (w) {
        w = w.trim().toLowerCase();
        if (w.length >= 3) { out.push(w); }
        var at = w.indexOf("@");
        if (at >= 3) { out.push(w.slice(0, at)); }
      });
      return out;
    }
    function update() {
      var value = input.value;
      var length = Array.from(value).length;
      var folded = value.toLowerCase();
      var message;
      if (length === 0) {
        hint.hidden = true;
        return;
      }
      if (length < min) {
        message = "Too short: " + length + " of at least " + min + " characters.";
      } else if (length > max) {
        message = "Too long: at most " + max + " characters.";
      } else if (contextWords().some(function (w) { return folded.indexOf(w) !== -1; })) {
        message = "Must not contain your username or email address.";
      } else if (length < 15) {
        message = "Long enough. Longer is stronger: a phrase of a few words is best.";
      } else {
        message = "Good length. Common passwords are still refused when you submit.";
      }
      hint.textContent = message;
      hint.hidden = false;
    }
    input.addEventListener("input", update);
  });
})();
