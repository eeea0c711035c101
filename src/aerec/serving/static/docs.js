// Starts Swagger UI from its local files; without them, points to the schema instead.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  if (typeof window.SwaggerUIBundle !== "function") {
    const note = document.createElement("p");
    note.textContent = "Swagger UI's files are not installed (pip install 'aerec[serve]'). " +
      "The API schema is here: ";
    const link = document.createElement("a");
    link.href = "/openapi.json";
    link.textContent = "/openapi.json";
    note.append(link);
    root.append(note);
    return;
  }
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
