/* Opens an outbox mail's quick view ("Quick view" in a row's "More" menu) in a
 * Wagtail modal (ModalWorkflow). Without JavaScript the link opens the mail's
 * full page. */
document.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-maillog-quick-view]');
  if (!link || !window.ModalWorkflow) return;
  event.preventDefault();
  // close the row's dropdown (a tippy popup) before the modal opens
  const popup = link.closest('[data-tippy-root]');
  if (popup && popup._tippy) popup._tippy.hide();
  window.ModalWorkflow({ url: link.dataset.maillogQuickView });
});
