window.addEventListener('error', function (e) {
  document.documentElement.setAttribute('data-report-error', String(e.message || e));
});
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images), bad = 0;
  imgs.forEach(function (img) { if (!img.complete || img.naturalWidth === 0) { bad += 1; } });
  document.documentElement.setAttribute('data-images', String(imgs.length));
  document.documentElement.setAttribute('data-report-status', bad ? 'broken:' + bad : 'ok');
});
