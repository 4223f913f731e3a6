// `lgss serve`'s page: a movie file dropped or chosen goes to POST
// v1/segment (with the token where the server asks for one); the answer is
// drawn by lgssView, the server's refusals shown in the API's own words.
(() => {
  const settings = JSON.parse(document.getElementById("lgss-data").textContent);
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), input = $("file"), status = $("status"), error = $("error"), view = $("view");
  const tokenField = $("token-field"), token = $("token"), rule = $("rule");
  // The options are never submitted: the upload carries them.
  $("options").addEventListener("submit", (e) => e.preventDefault());
  const fail = (msg) => {
    status.textContent = "";
    error.textContent = msg;
  };
  async function upload(file) {
    error.textContent = "";
    if (file.size > settings.max_body) {
      fail(`${file.name}: the body is over --max-body (${settings.max_body} bytes)`);
      return;
    }
    status.textContent = `Segmenting ${file.name} (${file.size} bytes)…`;
    const query = new URLSearchParams({ format: "json" });
    if (rule.value) query.set("rule", rule.value);
    const headers = { "Content-Type": "application/octet-stream" };
    if (token.value) headers.Authorization = `Bearer ${token.value}`;
    let response, text;
    try {
      response = await fetch(`v1/segment?${query}`, { method: "POST", body: file, headers });
      text = await response.text();
    } catch (e) {
      fail(`${file.name}: the server did not answer (${e.message})`);
      return;
    }
    if (!response.ok) {
      let msg = text.trim();
      try {
        msg = JSON.parse(text).error;
      } catch (_) {
        // Not the API's JSON (a proxy's page): shown as it came.
      }
      if (response.status === 401) {
        tokenField.hidden = false;
        token.focus();
      }
      fail(`${file.name}: ${response.status} ${msg}`);
      return;
    }
    const segmentation = JSON.parse(text);
    status.textContent = `${file.name}: ${segmentation.scenes.length} scenes.`;
    view.hidden = false;
    lgssView(view, {
      segmentation,
      model: settings.model,
      truth: null,
      scores: null,
      media: null,
      chapters: null,
      thumbnails: [],
    });
  }
  input.addEventListener("change", () => {
    if (input.files.length) upload(input.files[0]);
    input.value = "";
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });
})();
