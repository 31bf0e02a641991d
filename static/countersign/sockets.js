// The live sockets' reconnect delay (htmx's ws extension), on every page.
//
// While the channel layer (Redis) is down the server accepts a socket and
// closes it at once with 1013 "try again later" (approvals/pages/socket_outage.py).
// htmx counts its retries only between two opens, and each refused socket did
// open, so its own backoff would stay at the first step (up to 1 s) and every
// open page would knock about once a second. Here refusals in a row count
// too: a random wait up to 1, 2, 4 ... 64 s, htmx's "full jitter", from the
// larger of the two counts. A socket that receives a frame is up again and
// ends the count.
(function () {
  "use strict";

  var TRY_AGAIN_LATER = 1013;
  var refused = 0;

  document.addEventListener("htmx:wsClose", function (event) {
    refused = event.detail.event.code === TRY_AGAIN_LATER ? refused + 1 : 0;
  });
  document.addEventListener("htmx:wsAfterMessage", function () { refused = 0; });

  htmx.config.wsReconnectDelay = function (retryCount) {
    var step = Math.min(Math.max(retryCount, refused), 6);
    return 1000 * Math.pow(2, step) * Math.random();
  };
})();
