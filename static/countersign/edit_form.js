// The action page's edit form, built from the action type's JSON Schema.
//
// The form (#edit) carries the schema and the standing payload as JSON in
// data attributes (data-schema, data-standing), and a textarea named "payload":
// what the server receives, as without JavaScript. This script lays out one
// labelled control per field (types, formats, enums, required, lengths and
// patterns become the browser's own validation), writes the JSON into the
// textarea as the lead types, and before anything is sent shows the changed
// fields, old and new, for a confirmation. The server still judges the edit
// like a proposal (services.approve -> policy.judge_edit) and refuses what
// the schema refuses; the form carries the payload_digest the lead saw.
(function () {
  "use strict";

  function readJSON(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function isObject(value) { return value !== null && typeof value === "object" && !Array.isArray(value); }
  function clone(value) { return JSON.parse(JSON.stringify(value)); }
  function words(key) { var t = String(key).replace(/[_-]+/g, " "); return t.charAt(0).toUpperCase() + t.slice(1); }
  function typeOf(schema) {
    var t = schema.type;
    if (Array.isArray(t)) { t = t.filter(function (x) { return x !== "null"; })[0]; }
    if (!t && schema.enum) { return "string"; }
    return t || "";
  }

  var counter = 0;

  // One control for one field; returns {node, read} where read() gives the
  // value to store, or undefined to leave the key out.
  function control(path, key, schema, value, required, onChange) {
    var id = "edit-field-" + (++counter);
    var wrap = document.createElement("div");
    wrap.className = "edit-field";
    var label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = schema.title || words(key);
    if (required) { label.textContent += " (required)"; }
    if (schema.description) {
      var hint = document.createElement("span");
      hint.className = "hint";
      hint.textContent = schema.description;
      label.appendChild(hint);
    }
    wrap.appendChild(label);
    var type = typeOf(schema), input, read;
    var present = value !== undefined;
    if (schema.enum) {
      input = document.createElement("select");
      if (!required || !present) { input.appendChild(new Option("—", "")); }
      schema.enum.forEach(function (choice) {
        var option = new Option(String(choice), JSON.stringify(choice));
        option.selected = present && JSON.stringify(value) === option.value;
        input.appendChild(option);
      });
      read = function () { return input.value === "" ? undefined : JSON.parse(input.value); };
    } else if (type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = value === true;
      read = function () { return input.checked; };
    } else if (type === "number" || type === "integer") {
      input = document.createElement("input");
      input.type = "number";
      input.step = type === "integer" ? "1" : "any";
      if (schema.minimum !== undefined) { input.min = schema.minimum; }
      if (schema.maximum !== undefined) { input.max = schema.maximum; }
      input.value = present && value !== null ? String(value) : "";
      read = function () { return input.value === "" ? undefined : Number(input.value); };
      input.addEventListener("input", function () {
        var n = Number(input.value);
        var low = schema.exclusiveMinimum, high = schema.exclusiveMaximum;
        input.setCustomValidity(input.value !== "" && ((low !== undefined && n <= low) || (high !== undefined && n >= high))
          ? "Must be " + (low !== undefined && n <= low ? "more than " + low : "less than " + high) + "." : "");
      });
    } else if (type === "array" && (!schema.items || typeOf(schema.items) === "string")) {
      input = document.createElement("textarea");
      input.rows = 2;
      input.value = Array.isArray(value) ? value.join("\n") : "";
      label.appendChild(hintText("One per line."));
      read = function () {
        var items = input.value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
        return items.length || present ? items : undefined;
      };
      var item = schema.items || {};
      input.addEventListener("input", function () {
        var items = read() || [], bad = items.filter(function (s) { return !fits(s, item); });
        var few = schema.minItems && items.length < schema.minItems, many = schema.maxItems && items.length > schema.maxItems;
        input.setCustomValidity(bad.length ? "Not valid: " + bad.join(", ") : few ? "At least " + schema.minItems + "." :
          many ? "At most " + schema.maxItems + "." : "");
      });
    } else if (type === "string") {
      var long = (schema.maxLength || 0) > 240 || (typeof value === "string" && (value.length > 120 || value.indexOf("\n") >= 0));
      input = document.createElement(long ? "textarea" : "input");
      if (long) { input.rows = 6; } else {
        input.type = { email: "email", uri: "url", url: "url", date: "date" }[schema.format] || "text";
      }
      if (schema.maxLength) { input.maxLength = schema.maxLength; }
      if (schema.minLength) { input.minLength = schema.minLength; }
      if (schema.pattern && !long) { input.pattern = unanchored(schema.pattern); }
      input.value = present && value !== null ? String(value) : "";
      read = function () { return input.value === "" && !present ? undefined : input.value; };
    } else {
      // Anything else (objects in lists, mixed types): its JSON, checked on input.
      input = document.createElement("textarea");
      input.rows = 3;
      input.className = "code";
      input.value = present ? JSON.stringify(value, null, 2) : "";
      label.appendChild(hintText("As JSON."));
      read = function () {
        if (input.value.trim() === "") { return undefined; }
        try { return JSON.parse(input.value); } catch (e) { return value; }
      };
      input.addEventListener("input", function () {
        try { if (input.value.trim()) { JSON.parse(input.value); } input.setCustomValidity(""); } catch (e) { input.setCustomValidity("Not valid JSON."); }
      });
    }
    input.id = id;
    input.name = "field:" + path; // not read by the server: the JSON in "payload" is
    input.dataset.path = path;
    if (required && input.type !== "checkbox") { input.required = true; }
    input.addEventListener("input", onChange);
    input.addEventListener("change", onChange);
    wrap.appendChild(input);
    return { node: wrap, read: read };
  }

  function hintText(text) {
    var hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = text;
    return hint;
  }

  // HTML's pattern attribute is anchored already, and compiled with the v flag.
  function unanchored(pattern) { return pattern.replace(/^\^/, "").replace(/\$$/, ""); }

  function fits(text, schema) {
    if (schema.format === "email" && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(text)) { return false; }
    if (schema.pattern) { try { if (!new RegExp(schema.pattern).test(text)) { return false; } } catch (e) { /* the server judges */ } }
    if (schema.maxLength && text.length > schema.maxLength) { return false; }
    return true;
  }

  // The controls of an object's fields: the schema's, then any the payload has besides (kept as they are).
  function fieldsOf(schema, value, prefix, onChange, into) {
    var properties = isObject(schema.properties) ? schema.properties : {};
    var required = Array.isArray(schema.required) ? schema.required : [];
    var readers = [];
    // Required fields first, in the order of `required` (approvals.reads.previews.ordered_keys).
    var keys = required.filter(function (key) { return key in properties; });
    Object.keys(properties).forEach(function (key) { if (keys.indexOf(key) < 0) { keys.push(key); } });
    keys.forEach(function (key) {
      var sub = isObject(properties[key]) ? properties[key] : {};
      var path = prefix ? prefix + "." + key : key;
      if (typeOf(sub) === "object" && isObject(sub.properties)) {
        var set = document.createElement("fieldset");
        var legend = document.createElement("legend");
        legend.textContent = sub.title || words(key);
        set.appendChild(legend);
        var inner = fieldsOf(sub, isObject(value[key]) ? value[key] : {}, path, onChange, set);
        into.appendChild(set);
        readers.push({ key: key, read: function () { return inner(); } });
      } else {
        var made = control(path, key, sub, value[key], required.indexOf(key) >= 0, onChange);
        into.appendChild(made.node);
        readers.push({ key: key, read: made.read });
      }
    });
    return function () {
      var out = clone(value); // keys the schema does not name stay as they are
      readers.forEach(function (r) {
        var v = r.read();
        if (v === undefined) { delete out[r.key]; } else { out[r.key] = v; }
      });
      return out;
    };
  }

  // Dotted path -> JSON text of each leaf, as approvals.reads.payload_review names fields.
  function leaves(value, prefix, out) {
    out = out || {};
    if (isObject(value) && (Object.keys(value).length || !prefix)) {
      Object.keys(value).forEach(function (key) { leaves(value[key], prefix ? prefix + "." + key : key, out); });
    } else {
      out[prefix] = JSON.stringify(value);
    }
    return out;
  }

  function diff(before, after) {
    var a = leaves(before, ""), b = leaves(after, ""), rows = [];
    Object.keys(a).concat(Object.keys(b).filter(function (k) { return !(k in a); })).forEach(function (path) {
      if (a[path] !== b[path]) { rows.push({ path: path, was: a[path], now: b[path] }); }
    });
    return rows;
  }

  function cell(row, text, tag) {
    var td = document.createElement("td");
    if (text === undefined) {
      var absent = document.createElement("span");
      absent.className = "muted";
      absent.textContent = tag === "del" ? "absent" : "removed";
      td.appendChild(absent);
    } else {
      var mark = document.createElement(tag || "code");
      mark.textContent = text;
      td.appendChild(mark);
    }
    row.appendChild(td);
  }

  function typedValue(textarea) {
    try { var typed = JSON.parse(textarea.value); return isObject(typed) ? typed : null; } catch (e) { return null; }
  }

  function setUp(form) {
    if (form.dataset.built) { return; }
    var schema = readJSON(form.dataset.schema) || {};
    var standing = readJSON(form.dataset.standing);
    var textarea = form.querySelector("textarea[name=payload]");
    if (!textarea || !isObject(standing)) { return; }
    form.dataset.built = "1";
    var typedAtStart = typedValue(textarea);
    var start = typedAtStart || standing;

    var fields = document.createElement("div");
    fields.className = "edit-fields";
    var heading = document.createElement("h3");
    heading.textContent = "Edit the payload, then approve";
    form.insertBefore(heading, form.querySelector("label[for=edit-payload]"));
    var label = form.querySelector("label[for=edit-payload]");
    var write = function () { textarea.value = JSON.stringify(read(), null, 2); hideDiff(); };
    var read = fieldsOf(schema, start, "", write, fields);
    label.parentNode.insertBefore(fields, label);
    label.textContent = "The payload as JSON (what is sent)";
    var raw = document.createElement("details");
    raw.className = "raw-json";
    var summary = document.createElement("summary");
    summary.textContent = "Edit as JSON instead";
    raw.appendChild(summary);
    label.parentNode.insertBefore(raw, label);
    raw.appendChild(label);
    raw.appendChild(textarea);
    textarea.addEventListener("input", function () {
      // Typed by hand: the fields follow, when it parses.
      try {
        var typed = JSON.parse(textarea.value);
        if (!isObject(typed)) { return; }
        fields.textContent = "";
        read = fieldsOf(schema, typed, "", write, fields);
      } catch (e) { /* the server will say where */ }
      hideDiff();
    });

    var panel = document.createElement("div");
    panel.className = "edit-diff";
    panel.setAttribute("role", "region");
    panel.setAttribute("aria-live", "polite");
    panel.setAttribute("aria-label", "Changes to confirm");
    panel.hidden = true;
    var submit = form.querySelector("button[type=submit]");
    submit.parentNode.insertBefore(panel, submit);
    submit.textContent = "Review changes";
    var pending = null;
    // Text the server refused, or that does not parse, shows as the lead typed it, beside its errors.
    var typedBad = textarea.getAttribute("aria-invalid") === "true" || !typedAtStart;
    if (typedBad) { raw.open = true; }
    if (textarea.hasAttribute("autofocus")) {
      var first = typedBad ? textarea : fields.querySelector("input, select, textarea");
      if (first) { first.focus(); }
    }

    function hideDiff() {
      panel.hidden = true;
      panel.textContent = "";
      pending = null;
      submit.hidden = false;
    }

    function showDiff(issue) {
      var current;
      try { current = JSON.parse(textarea.value); } catch (e) { current = null; }
      panel.textContent = "";
      var title = document.createElement("h3");
      title.textContent = "Confirm the changes";
      panel.appendChild(title);
      var rows = isObject(current) ? diff(standing, current) : [];
      if (!isObject(current)) {
        panel.appendChild(hintText("The JSON does not parse: the server will say where."));
      } else if (!rows.length) {
        panel.appendChild(hintText("Nothing changed: this approves the payload as it stands."));
      } else {
        var table = document.createElement("table");
        table.className = "diff";
        var head = table.createTHead().insertRow();
        ["Field", "Was", "Now"].forEach(function (name) { var th = document.createElement("th"); th.textContent = name; head.appendChild(th); });
        var body = table.createTBody();
        rows.forEach(function (change) {
          var tr = body.insertRow();
          tr.dataset.field = change.path;
          cell(tr, change.path, "code");
          cell(tr, change.was, "del");
          cell(tr, change.now, "ins");
        });
        panel.appendChild(table);
      }
      var confirm = document.createElement("button");
      confirm.type = "button";
      confirm.className = "confirm-edit";
      confirm.textContent = "Confirm and approve";
      var back = document.createElement("button");
      back.type = "button";
      back.className = "secondary";
      back.textContent = "Keep editing";
      confirm.addEventListener("click", function () { var go = pending; hideDiff(); if (go) { go(); } });
      back.addEventListener("click", function () { hideDiff(); submit.focus(); });
      panel.appendChild(confirm);
      panel.appendChild(document.createTextNode(" "));
      panel.appendChild(back);
      panel.hidden = false;
      submit.hidden = true;
      pending = issue;
      confirm.focus();
    }

    // htmx asks before it sends: show the changes first, send on confirmation.
    form.addEventListener("htmx:confirm", function (event) {
      if (event.detail.elt !== form) { return; }
      event.preventDefault();
      if (!form.reportValidity()) { return; }
      showDiff(function () { event.detail.issueRequest(true); });
    });
  }

  function setUpAll() { document.querySelectorAll("form#edit[data-schema]").forEach(setUp); }
  document.addEventListener("htmx:afterSettle", setUpAll);
  setUpAll();
})();
