// Starts Swagger UI on /docs with the server's own OpenAPI document (served as a file, so the
// page needs no inline script and the Content-Security-Policy can forbid it).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    tryItOutEnabled: false,
  });
});
