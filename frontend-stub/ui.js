// Small DOM helpers shared by the views: elements, the #error box, form submission.

import { ApiError } from "./api.js";

export const $ = (selector) => document.querySelector(selector);

export function element(tag, text = "", className = "") {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

function problemLines(problem) {
  // FastAPI's default 422 puts the error list in `detail`; accept that shape too.
  const errors = problem.errors ?? (Array.isArray(problem.detail) ? problem.detail : []);
  const detail = typeof problem.detail === "string" ? problem.detail : problem.title;
  const fieldErrors = errors.map((err) => {
    const field = Array.isArray(err.loc) && err.loc.length ? err.loc.at(-1) : "?";
    return `${field}: ${err.msg}`;
  });
  return { detail: detail || `Request failed (HTTP ${problem.status ?? "?"})`, fieldErrors };
}

export function showError(error) {
  const problem = error instanceof ApiError ? error.problem : { detail: String(error?.message ?? error) };
  const { detail, fieldErrors } = problemLines(problem);
  const box = $("#error");
  box.replaceChildren(element("p", detail));
  if (fieldErrors.length) {
    const list = document.createElement("ul");
    list.append(...fieldErrors.map((text) => element("li", text)));
    box.append(list);
  }
  box.hidden = false;
}

export function clearError() {
  $("#error").replaceChildren();
  $("#error").hidden = true;
}

// Runs a user action: clears old errors, disables the trigger, reports failures.
export async function act(trigger, work) {
  clearError();
  if (trigger) trigger.disabled = true;
  try {
    await work();
  } catch (err) {
    showError(err);
  } finally {
    if (trigger) trigger.disabled = false;
  }
}

// handler(values, form) runs as an action when the form is submitted.
export function onSubmit(selector, handler) {
  const form = $(selector);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    act(form.querySelector("button[type=submit]"), () => handler(values, form));
  });
}
