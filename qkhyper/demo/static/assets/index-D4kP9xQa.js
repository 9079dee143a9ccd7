// The demo page's script: both demo APIs through the static server's /api
// prefix, plus the users app's server-sent events. No framework, no build.

const statusLine = document.getElementById("status");

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    throw new Error(`${path} answered HTTP ${response.status}`);
  }
  return response.json();
}

function render(listId, rows, describe) {
  const items = rows.map((row) => {
    const item = document.createElement("li");
    item.textContent = describe(row);
    return item;
  });
  document.getElementById(listId).replaceChildren(...items);
}

async function loadTables() {
  try {
    const [users, orders] = await Promise.all([getJson("/api/users/"), getJson("/api/orders/")]);
    const names = new Map(users.map((user) => [user.id, user.name]));
    render("users", users, (user) => `${user.name} (#${user.id})`);
    render("orders", orders, (order) => `${order.item} for ${names.get(order.user_id) ?? `user #${order.user_id}`}`);
    statusLine.textContent = "ok";
  } catch (error) {
    statusLine.textContent = `error: ${error.message}`;
    statusLine.classList.add("error");
  }
}

function followEvents() {
  const list = document.getElementById("events");
  const source = new EventSource("/api/users/live/events");
  let received = 0;
  source.onmessage = (event) => {
    received += 1;
    const item = document.createElement("li");
    item.textContent = event.data;
    list.append(item);
  };
  // The demo stream ends after a few events; EventSource would reconnect
  // forever, so stop once a stream has delivered something.
  source.onerror = () => {
    if (received > 0) {
      source.close();
    }
  };
}

loadTables();
followEvents();
