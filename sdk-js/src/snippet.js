// The snippet a site pastes into its pages (minified into dist/snippet.min.js), followed by
// `braid.load('WRITE_KEY')`. It defines window.braid at once; calls made before the SDK has
// loaded wait in the stub, in order, and the SDK replays them. The SDK comes from the site's own
// host (`sdkHost`, default the page's origin) under `sdkPath` (default /sdk): first-party.
(function (w, d) {
  var braid = (w.braid = w.braid || []);
  if (braid.initialized || braid.invoked) return;
  braid.invoked = true;
  var methods = [
    'track', 'identify', 'page', 'screen', 'group', 'alias', 'reset', 'ready', 'debug',
    'addSourceMiddleware', 'setConsent', 'flush',
  ];
  methods.forEach(function (method) {
    braid[method] = function () {
      var args = Array.prototype.slice.call(arguments);
      args.unshift(method);
      braid.push(args);
      return braid;
    };
  });
  braid.load = function (writeKey, options) {
    options = options || {};
    braid._writeKey = writeKey;
    braid._options = options;
    var script = d.createElement('script');
    script.type = 'module';
    script.async = true;
    script.src = (options.sdkHost || '') + (options.sdkPath || '/sdk') + '/braid.js';
    d.head.appendChild(script);
  };
})(window, document);
