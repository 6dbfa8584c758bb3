// Where the dev inbox reads messages from: the notification service's ListMessages (what
// exists today). Swap this module for a dedicated dev-inbox API when one lands; the page only
// needs { id, channel, to, subject, body, status, time } per message, newest first.
import { client } from "../lib/api.js";

export async function listMessages(token) {
  const api = client({ key: null, token: () => token });
  const { messages = [] } = await api.get("/v1/messages", { pageSize: 100 });
  return messages.map((m) => ({
    id: m.id,
    channel: (m.channel || "").replace("MESSAGE_CHANNEL_", "").toLowerCase(),
    to: m.toAddress || "",
    subject: m.subject || m.templateKey || "",
    body: m.textBody || "",
    status: (m.status || "").replace("MESSAGE_STATUS_", "").toLowerCase(),
    reason: m.statusReason || "",
    time: m.sendTime || m.createTime || "",
  })).sort((a, b) => b.time.localeCompare(a.time));
}
