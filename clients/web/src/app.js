// app.js — log in, find out what the token may do, switch between the
// annotator page (#annotate), the dashboard (#dashboard), the studies
// (#studies), the models page with its playground (#models) and the
// admin's annotation quality page (#quality).
import { api, clearToken, getToken, setToken, setUnauthorizedHandler } from './api.js';
import { $, setText } from './dom.js';
import * as annotate from './annotate.js';
import * as dashboard from './dashboard.js';
import * as studies from './studies.js';
import * as models from './models.js';
import * as quality from './quality.js';

const views = { annotate, dashboard, studies, models, quality };
let role = null; // 'admin' | 'viewer' | 'annotator'

// There is no "who am I" route: the role follows from what the token may read.
async function detectRole() {
  await api('GET', '/v1/projects?limit=1'); // any valid token; 401 otherwise
  try {
    await api('GET', '/v1/tokens?limit=1');
    return 'admin';
  } catch (err) {
    if (err.status !== 403) throw err;
  }
  try {
    await api('GET', '/v1/jobs?limit=1');
    return 'viewer';
  } catch (err) {
    if (err.status !== 403) throw err;
  }
  return 'annotator';
}

function showLogin(message) {
  role = null;
  for (const v of Object.values(views)) v.hide();
  for (const name of Object.keys(views)) $(name).hidden = true;
  $('nav').hidden = true;
  $('logout').hidden = true;
  setText($('who'), '');
  $('login').hidden = false;
  setText($('login-error'), message || '');
  $('token').focus();
}

function route() {
  if (!role) return;
  let name = location.hash.slice(1);
  // annotators read neither jobs nor studies
  if (!views[name] || (role === 'annotator' && name === 'studies')) name = role === 'annotator' ? 'annotate' : 'dashboard';
  for (const [key, v] of Object.entries(views)) {
    const on = key === name;
    $(key).hidden = !on;
    $(`nav-${key}`).classList.toggle('active', on);
    if (on) v.show(role);
    else v.hide();
  }
}

async function start() {
  try {
    role = await detectRole();
  } catch (err) {
    clearToken();
    showLogin(err.status === 401 ? 'That token is not valid (unknown or revoked).' : err.describe());
    return;
  }
  $('login').hidden = true;
  // The token field is hidden now: leave no focus in it, so the annotator's
  // keys (1-9, Enter, s) work at once.
  if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
  $('nav').hidden = false;
  $('nav-quality').hidden = role !== 'admin';
  $('logout').hidden = false;
  $('nav-studies').hidden = role === 'annotator';
  setText($('who'), `signed in as ${role}`);
  route();
}

setUnauthorizedHandler(() => {
  clearToken();
  showLogin('The server rejected the token (unknown or revoked); log in again.');
});

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  $('token').value = '';
  if (!token) return;
  setToken(token);
  start();
});

$('logout').addEventListener('click', () => {
  clearToken();
  showLogin('');
});

window.addEventListener('hashchange', route);

for (const v of Object.values(views)) v.init();
if (getToken()) start();
else showLogin('');
