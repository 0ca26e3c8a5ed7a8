// Lockgate's Swagger UI start-up (a file, not an inline script, so the page's CSP can forbid inline scripts).
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // no call to an online validator
  tryItOutEnabled: false,
  persistAuthorization: false, // a key is never written to the browser's storage
});
