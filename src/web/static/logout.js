// The signed-out page loads the portals' front-channel logout pages in
// hidden iframes; once they have loaded (the window's load event waits for
// them), or after 4 s for a slow portal, it continues to the portal that
// asked for the logout. Without script the page's meta refresh does it.
(function () {
  "use strict";
  var link = document.getElementById("continue");
  if (!link) {
    return;
  }
  var gone = false;
  function go() {
    if (!gone) {
      gone = true;
      window.location.replace(link.href);
    }
  }
  window.addEventListener("load", go);
  window.setTimeout(go, 4000);
})();
