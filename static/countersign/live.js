// Keeps the queue live: a socket per page; on any change of an action in
// the user's departments, htmx re-fetches the queue table. On a dropped
// socket it reconnects with backoff and re-syncs, so nothing is missed.
(function () {
  "use strict";
  var delay = 500;
  function resync() { document.body.dispatchEvent(new Event("queue-changed")); }
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/queue/");
    socket.onopen = function () {
      if (delay > 500) { resync(); }
      delay = 500;
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "action.changed") { resync(); }
    };
    socket.onclose = function () {
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
