// The browser example: a page on the official Socket.IO client (vendor/socket.io.min.js).
//
// What it shows, as examples/client.py does for Python:
// - websocket only (`transports: ["websocket"]`): the service serves no long-polling;
// - the token in the Socket.IO `auth` payload, from a function, so that every connection
//   (the first and each reconnection) gets a fresh one;
// - the ack envelope of every event, its errors shown;
// - renewal: a `reauth` event with a fresh token at half of the token's lifetime, on the
//   same connection; and when the session ended anyway (a notice such as `auth_expired`,
//   then the server disconnects), a new connection with a fresh token;
// - text from the room shown with textContent, never parsed as HTML.
//
// Tokens come from /token, which only the development page server (serve.py) offers: a
// real page asks its own login backend, which knows who the user is.
"use strict";

(() => {
  // Renew when half of the token's lifetime has passed.
  const RENEW_AT = 0.5;
  const CALL_TIMEOUT_MS = 5000;
  // The notices the server sends just before it ends a session, and how long to wait
  // before connecting again with a fresh token (absent: do not; a revoked user stays out).
  const NOTICES = ["auth_expired", "revoked", "idle_timeout", "rate_limited"];
  const RECONNECT_AFTER_MS = { auth_expired: 0, idle_timeout: 0, rate_limited: 5000 };

  const element = (id) => document.getElementById(id);
  const status = element("status");
  const log = element("log");
  const joinForm = element("join-form");
  const messageForm = element("message-form");
  const roomInput = element("room");
  const textInput = element("text");

  let socket = null;
  let token = null; // the token of the current session, for its renewal time
  let renewal = null;
  let room = null;
  let notice = null; // the last session-ending notice, until the next connection

  function show(kind, text) {
    const item = document.createElement("li");
    item.dataset.kind = kind;
    const now = new Date();
    const time = document.createElement("time");
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString();
    item.append(time, document.createTextNode(text));
    log.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  // Whatever the policy stops is shown too: a page that works raises none of these.
  document.addEventListener("securitypolicyviolation", (event) => {
    const what = event.blockedURI || "inline code";
    show("csp", `Content-Security-Policy (${event.effectiveDirective}) blocked ${what}`);
  });

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function setMessaging(enabled) {
    for (const control of messageForm.elements) control.disabled = !enabled;
  }

  async function fetchJson(path, options = {}) {
    const response = await fetch(path, { cache: "no-store", ...options });
    if (!response.ok) throw new Error(`${path} answered ${response.status}`);
    return response.json();
  }

  async function getToken() {
    const body = await fetchJson("/token", { method: "POST" });
    if (typeof body.token !== "string") throw new Error("/token sent no token");
    return body.token;
  }

  // The token's own times, read without verifying it: the server verifies; the page only
  // needs to know when to renew.
  function claims(jwt) {
    const part = jwt.split(".")[1] || "";
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")),
      (char) => char.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  // Send `event` and wait for its ack; the envelope's error is shown, and null returned.
  async function call(event, payload) {
    let ack;
    try {
      ack = await socket.timeout(CALL_TIMEOUT_MS).emitWithAck(event, payload);
    } catch (error) {
      show("error", `${event}: no answer (${error.message})`);
      return null;
    }
    if (ack && ack.ok === true) return ack;
    const problem = (ack && ack.error) || {};
    show("error", `${event} refused: ${problem.code ?? "?"} (${problem.message ?? "no reason"})`);
    return null;
  }

  function scheduleRenewal() {
    clearTimeout(renewal);
    const { iat, exp } = claims(token);
    const issued = typeof iat === "number" ? iat : Date.now() / 1000;
    const at = (issued + RENEW_AT * (exp - issued)) * 1000;
    renewal = setTimeout(renew, Math.max(0, at - Date.now()));
  }

  async function renew() {
    let fresh;
    try {
      fresh = await getToken();
    } catch (error) {
      show("error", `renewal: ${error.message}`);
      return; // the session ends at the old expiry; then a new connection gets a token
    }
    const ack = await call("reauth", { token: fresh });
    if (ack === null) return;
    token = fresh;
    const until = new Date(ack.expires_at * 1000).toLocaleTimeString();
    show("renewed", `session renewed until ${until}`);
    scheduleRenewal();
  }

  async function join(name) {
    const ack = await call("join", { room: name });
    if (ack === null) return;
    room = name;
    show("joined", `joined ${name}`);
    setMessaging(true);
  }

  function connect(service) {
    socket = io(service, {
      transports: ["websocket"], // the only transport the service serves
      // Called for every connection attempt: each one gets a fresh token.
      auth: (send) => {
        getToken().then(
          (fresh) => {
            token = fresh;
            send({ token: fresh });
          },
          (error) => {
            show("error", `no token: ${error.message}`);
            send({}); // refused by the server, and shown as a connect error
          },
        );
      },
    });
    socket.on("connect", () => {
      notice = null;
      status.dataset.sid = socket.id;
      setStatus("connected", `Connected to ${service}`);
      show("connected", `connected over ${socket.io.engine.transport.name}, id ${socket.id}`);
      scheduleRenewal();
      if (room !== null) join(room); // rooms belong to a connection: join again
    });
    socket.on("connect_error", (error) => {
      // The service says only "unauthorized" (its security log has the reason); a refused
      // origin or certificate shows as a websocket error.
      setStatus("error", "Connection refused");
      show("error", `connect error: ${error.message}`);
    });
    for (const name of NOTICES) {
      socket.on(name, (data) => {
        notice = name;
        show("notice", `${name}: ${(data && data.message) || "the server ends the session"}`);
      });
    }
    socket.on("disconnect", (reason) => {
      clearTimeout(renewal);
      setMessaging(false);
      setStatus("disconnected", `Disconnected (${reason})`);
      show("disconnected", `disconnected: ${reason}`);
      // The client reconnects by itself after a lost transport, never after the server
      // ended the session: that needs a fresh token, and for some notices, none at all.
      if (reason === "io server disconnect" && notice in RECONNECT_AFTER_MS) {
        setTimeout(() => socket.connect(), RECONNECT_AFTER_MS[notice]);
      }
    });
    socket.on("message", (data) => {
      show("message", `${data.room} | ${data.sub}: ${data.text}`);
    });
  }

  joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = roomInput.value.trim();
    if (socket === null || name === room) return;
    const previous = room;
    (previous === null ? Promise.resolve() : call("leave", { room: previous })).then(() => {
      room = null;
      setMessaging(false);
      return join(name);
    });
  });

  messageForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = textInput.value;
    if (room === null || text === "") return;
    const ack = await call("message", { room, text });
    if (ack === null) return;
    show("sent", `${room} | you: ${text}`);
    textInput.value = "";
  });

  fetchJson("/config.json").then(
    (config) => connect(config.service),
    (error) => show("error", `no configuration: ${error.message}`),
  );
})();
