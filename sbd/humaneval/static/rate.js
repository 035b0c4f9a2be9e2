// Drives the trial page: fetch the current trial, show it once its three images have
// loaded, take the answer (←/→ or a click), post it, show the next one. The server keeps
// all state, so a reload (or another day) continues where the rater stopped.
"use strict";
(function () {
  const body = document.body;
  const apiNext = body.dataset.apiNext, apiAnswer = body.dataset.apiAnswer;
  const imgs = { stimulus: document.getElementById("img-stimulus"),
                 left: document.getElementById("img-left"), right: document.getElementById("img-right") };
  const progress = document.getElementById("progress"), fill = document.getElementById("bar-fill");
  const message = document.getElementById("message");
  let current = null, shownAt = 0;

  function setState(s) { body.dataset.state = s; }

  function showProgress(t) {
    const shown = t.done ? t.total : t.answered + 1;
    progress.textContent = (t.done ? "done " : "") + shown + " / " + t.total;
    fill.style.width = (100 * t.answered / Math.max(1, t.total)) + "%";
    body.dataset.answered = t.answered;
  }

  function load(src, img) {
    return new Promise(function (resolve, reject) {
      img.onload = resolve;
      img.onerror = function () { reject(new Error("image failed to load: " + src)); };
      img.src = src;
    });
  }

  function show(t) {
    current = null;
    showProgress(t);
    if (t.done) {
      document.getElementById("trial").hidden = true;
      document.getElementById("done").hidden = false;
      setState("done");
      return;
    }
    setState("loading");
    document.querySelectorAll(".choice").forEach(function (b) { b.classList.remove("picked"); });
    Promise.all(["stimulus", "left", "right"].map(function (k) { return load(t.images[k], imgs[k]); }))
      .then(function () {
        current = t; shownAt = performance.now();
        body.dataset.trialId = t.trial_id;
        setState("ready");
      })
      .catch(function (e) { message.textContent = e.message; setState("error"); });
  }

  function fail(resp) {
    if (resp.status === 401) { window.location.href = "/"; return; }
    return resp.json().then(function (d) { message.textContent = d.error || ("error " + resp.status); setState("error"); });
  }

  function next() {
    fetch(apiNext, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json().then(show) : fail(r); })
      .catch(function (e) { message.textContent = e.message; setState("error"); });
  }

  function answer(choice) {
    if (!current || body.dataset.state !== "ready") return;
    const t = current; current = null;
    setState("sending");
    document.getElementById("choice-" + choice).classList.add("picked");
    fetch(apiAnswer, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
                       body: JSON.stringify({ trial_id: t.trial_id, choice: choice,
                                              rt_ms: Math.round(performance.now() - shownAt) }) })
      .then(function (r) {
        if (r.ok) return r.json().then(show);
        if (r.status === 409) return r.json().then(function (d) { show(d.next); });
        return fail(r);
      })
      .catch(function (e) { message.textContent = e.message; setState("error"); });
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key === "ArrowLeft") { ev.preventDefault(); answer("left"); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); answer("right"); }
  });
  document.querySelectorAll(".choice").forEach(function (b) {
    b.addEventListener("click", function () { answer(b.dataset.choice); });
  });
  next();
})();
