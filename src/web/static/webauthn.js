// civid: passkeys (WebAuthn). Loaded only by pages that offer them; every
// element it needs carries data-* attributes, so no inline script is needed
// (the pages' CSP forbids it). Without WebAuthn the passkey parts stay hidden.
(function () {
  "use strict";

  function dec(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var b = atob(s), a = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) a[i] = b.charCodeAt(i);
    return a.buffer;
  }

  function enc(buf) {
    if (!buf) return null;
    var a = new Uint8Array(buf), s = "";
    for (var i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, fields) {
    var body = new URLSearchParams();
    Object.keys(fields).forEach(function (k) { body.append(k, fields[k]); });
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return { error: r.statusText || "error" }; });
    });
  }

  function show(box, text) {
    var el = box.querySelector("[data-passkey-error]");
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
    if (text) el.focus();
  }

  function follow(box, data) {
    if (data && data.redirect) {
      window.location.assign(data.redirect);
    } else {
      show(box, (data && data.error) || box.dataset.failed);
    }
  }

  // Sign-in: a button, and autofill (conditional UI) where supported.
  function signin(box) {
    var base = { tx: box.dataset.tx, csrf: box.dataset.csrf };
    var pending = null;
    // Once a passkey answered (autofill or button), one sign-in is under way:
    // a second ceremony would race it for the same transaction.
    var finishing = false;

    function run(conditional) {
      if (finishing) return;
      if (pending) pending.abort();
      var ctl = new AbortController();
      pending = ctl;
      return post(box.dataset.options, base).then(function (o) {
        if (!o.publicKey) { throw new Error(o.error || box.dataset.failed); }
        var pk = o.publicKey;
        pk.challenge = dec(pk.challenge);
        (pk.allowCredentials || []).forEach(function (c) { c.id = dec(c.id); });
        var req = { publicKey: pk, signal: ctl.signal };
        if (conditional) req.mediation = "conditional";
        return navigator.credentials.get(req);
      }).then(function (cred) {
        if (!cred || finishing) return;
        finishing = true;
        var r = cred.response;
        var json = {
          id: cred.id,
          rawId: enc(cred.rawId),
          type: cred.type,
          response: {
            authenticatorData: enc(r.authenticatorData),
            clientDataJSON: enc(r.clientDataJSON),
            signature: enc(r.signature),
            userHandle: enc(r.userHandle)
          },
          extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {}
        };
        return post(box.dataset.finish, Object.assign({ credential: JSON.stringify(json) }, base))
          .then(function (data) {
            if (!data || !data.redirect) finishing = false;
            follow(box, data);
          });
      }).catch(function (e) {
        if (e && e.name === "AbortError") return;
        finishing = false;
        if (!conditional) show(box, e && e.name === "NotAllowedError" ? box.dataset.cancelled : box.dataset.failed);
      });
    }

    var button = box.querySelector("#passkey-signin");
    if (button) {
      button.hidden = false;
      button.addEventListener("click", function () { run(false); });
    }
    if (box.dataset.conditional === "1" && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) { if (ok) run(true); });
    }
  }

  // Account centre: add a passkey.
  function register(box) {
    var button = box.querySelector("#passkey-add");
    if (!button) return;
    box.hidden = false;
    button.addEventListener("click", function () {
      button.disabled = true;
      var name = box.querySelector("#passkey-name");
      var ceremony = null;
      post(box.dataset.options, { csrf: box.dataset.csrf }).then(function (o) {
        if (!o.options) { throw new Error(o.error || box.dataset.failed); }
        ceremony = o.ceremony;
        var pk = o.options.publicKey;
        pk.challenge = dec(pk.challenge);
        pk.user.id = dec(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = dec(c.id); });
        return navigator.credentials.create({ publicKey: pk });
      }).then(function (cred) {
        var r = cred.response;
        var json = {
          id: cred.id,
          rawId: enc(cred.rawId),
          type: cred.type,
          response: {
            attestationObject: enc(r.attestationObject),
            clientDataJSON: enc(r.clientDataJSON),
            transports: r.getTransports ? r.getTransports() : undefined
          },
          extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {}
        };
        return post(box.dataset.finish, {
          csrf: box.dataset.csrf,
          ceremony: ceremony,
          name: name ? name.value : "",
          next: box.dataset.next || "",
          credential: JSON.stringify(json)
        }).then(function (data) { follow(box, data); });
      }).catch(function (e) {
        show(box, e && e.name === "NotAllowedError" ? box.dataset.cancelled : (e && e.message) || box.dataset.failed);
      }).then(function () { button.disabled = false; });
    });
  }

  if (!window.PublicKeyCredential || !window.fetch) return;
  document.querySelectorAll("[data-passkey-signin]").forEach(signin);
  document.querySelectorAll("[data-passkey-register]").forEach(register);
})();
