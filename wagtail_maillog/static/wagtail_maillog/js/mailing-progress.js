/* wagtail-maillog: the results block of a mailing refreshes itself while it is busy.
 * Polls the block's URL every few seconds (and posts "update results" without
 * leaving the page); stops when nothing is moving any more. */
(function () {
    "use strict";
    var POLL_MS = 2500;

    function start(box) {
        var url = box.getAttribute("data-maillog-progress-url");
        var timer = null;

        function busy() {
            var inner = box.querySelector(".maillog-progress");
            return inner && inner.getAttribute("data-busy") === "true";
        }
        function swap(html) {
            box.innerHTML = html;
            schedule();
        }
        function poll() {
            fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
                .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
                .then(swap)
                .catch(function () { timer = window.setTimeout(poll, POLL_MS * 4); });
        }
        function schedule() {
            window.clearTimeout(timer);
            if (busy()) { timer = window.setTimeout(poll, POLL_MS); }
        }
        box.addEventListener("submit", function (event) {
            var form = event.target.closest(".maillog-progress__refresh");
            if (!form) { return; }
            event.preventDefault();
            fetch(form.action, {
                method: "POST",
                body: new FormData(form),
                credentials: "same-origin",
                headers: { "X-Requested-With": "fetch" },
            }).then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
              .then(swap)
              .catch(function () { form.submit(); });
        });
        schedule();
    }

    function init() {
        document.querySelectorAll("[data-maillog-progress-url]").forEach(start);
    }
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
})();
