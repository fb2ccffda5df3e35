"""Deterministic generator of a realistic synthetic helpdesk dataset.

Why: deskpilot's classifiers, routers and responders need demo and test data that looks like a real
helpdesk export (imbalanced queues, noisy priorities, typos, quoted replies, signatures, confusable
queues) without shipping any real customer data. Everything here is invented from templates and slots,
driven only by ``random.Random(seed)``, so the same seed always gives a byte-identical CSV.

Usage::

    python examples/generate_tickets.py --out tickets.csv [--n 2000] [--seed 7]

or, from Python, ``generate(n, seed)`` and ``write_csv(rows, path)``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

COLUMNS: tuple[str, ...] = ("id", "subject", "body", "queue", "priority", "answer", "requester", "language")

# Share of tickets per queue, like a real helpdesk: a few big queues and a long tail.
QUEUE_WEIGHTS: dict[str, float] = {
    "technical_support": 0.22,
    "billing": 0.17,
    "shipping": 0.13,
    "account_access": 0.11,
    "returns": 0.10,
    "sales": 0.08,
    "it_security": 0.08,
    "hr": 0.06,
    "product_feedback": 0.05,
}
QUEUES: tuple[str, ...] = tuple(QUEUE_WEIGHTS)
PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "urgent")
VIP_DOMAIN = "bigcorp.example"

# Priority weights (low, medium, high, urgent) by a scenario's own urgency bias.
_PRIORITY_BIAS: dict[str, tuple[float, float, float, float]] = {
    "": (0.24, 0.49, 0.215, 0.055),
    "hi": (0.0, 0.30, 0.42, 0.28),
    "lo": (0.60, 0.35, 0.05, 0.0),
}
_P_AMBIGUOUS = 0.12  # chance a ticket of a queue comes from a scenario shared with a confusable queue
_P_PRIORITY_NOISE = 0.10  # labels that do not match the text's cues
_P_TYPOS = 0.40  # tickets with typos
_TYPO_RATE = 0.08  # per word of 4+ letters, i.e. roughly 5% of all words
_P_HURRIED = 0.08  # all-lowercase, no greeting, no signature
_P_SIGNATURE = 0.38
_P_QUOTE = 0.15

# --------------------------------------------------------------------------------------------------
# Scenario templates. Format: "== queue[+other_queue]: key [hi|lo]" starts a scenario; then lines
# "S subject", "L first line of the body", "D optional detail", "A agent answer"; a line indented by
# two spaces continues the previous entry. {slots} are filled per ticket (see _slots()).
# --------------------------------------------------------------------------------------------------
_SCENARIOS = """
== billing: double_charge
S Charged twice for invoice {invoice}
S Double charge on my card
S Duplicate payment of {amount}
L I was charged twice for invoice {invoice}, both times {amount}.
L My card statement shows two identical charges of {amount} on {date}.
L We paid invoice {invoice} once but your system took the payment twice.
D The card ends in {card4}.
D Both transactions show the same reference number.
D Our finance team spotted it during the monthly reconciliation.
D I have attached a screenshot of the bank statement.
A I can see the duplicate charge of {amount} on invoice {invoice}. I've reversed the second payment and
  it should be back on the card ending {card4} within 5-7 business days.
A Thanks for flagging this. Our payment processor retried the transaction for {invoice}, which caused
  the duplicate. The extra {amount} has been refunded and a confirmation email is on its way.
A You're right, invoice {invoice} was collected twice. I've asked our payments team to refund one of the
  two charges of {amount}; depending on your bank it can take up to a week to show.

== billing: wrong_invoice_amount
S Invoice {invoice} amount is wrong
S Incorrect total on our latest invoice
S Question about invoice {invoice}
L Invoice {invoice} says {amount} but our agreed price is {amount2}.
L The total on our latest invoice doesn't match the quote we signed.
L We were billed {amount} for the {plan} plan, which is more than the list price.
D Could you send a corrected invoice?
D We can't approve it for payment until the amount is fixed.
D I think the old price list was used.
A I've checked invoice {invoice} against your contract and the agreed amount is indeed {amount2}. I've
  voided the original and issued a corrected invoice, which you'll find attached.
A Thanks for pointing this out. The invoice was generated with the previous price list; a credit note
  for the difference and a corrected invoice {invoice} will follow within one business day.

== billing: vat_details
S Please add our VAT number to invoices
S Company address on invoice is wrong
S Need invoice reissued with correct billing details
L Can you reissue invoice {invoice} with our VAT number on it?
L Our company name and billing address are wrong on the last invoice.
L We moved offices and the invoices still show our old address.
D Our accounts payable team rejects invoices without a VAT ID.
D The correct legal entity is {company}.
D Please also update the details for future invoices.
A I've updated the billing details on your account and reissued invoice {invoice} with the VAT number and
  the new address. All future invoices will use these details.
A Thanks for letting us know. The billing profile for {company} now has the correct address and VAT ID,
  and a corrected copy of {invoice} is attached to this reply.

== billing: downgrade_proration
S Still billed for the old plan
S Downgrade not reflected on invoice
S Charged full price after downgrading
L We downgraded from {plan2} to {plan} on {date} but were still charged {amount}.
L I switched to a cheaper plan last month and the invoice still shows the old price.
L Why was I charged for {seats} seats after reducing our subscription?
D I expected a prorated amount.
D The change shows correctly in the account settings.
D Please credit the difference.
A I can confirm the downgrade to {plan} was made on {date}, but the proration wasn't applied. I've added a
  credit of {amount2} to your account, which will be deducted from your next invoice.
A Sorry about that. The plan change was scheduled for the end of the billing period rather than
  immediately, so invoice {invoice} still used the old price. I've corrected it and issued a credit note.

== billing: card_declined
S Payment failed
S Card declined when paying invoice
S How do I update my payment method?
L Our payment for invoice {invoice} failed and we got a warning email.
L My card keeps getting declined when I try to pay the {amount} invoice.
L I need to update the credit card on file, the old one expired.
D The card works fine everywhere else.
D I don't want the account to be suspended.
D The new card ends in {card4}.
A You can update the payment method under Settings > Billing > Payment methods. Once the new card is
  saved, we'll retry the payment for {invoice} automatically within 24 hours.
A The decline came from your bank, so it's worth checking with them that online payments of {amount} are
  allowed. Your account won't be suspended while we sort this out, and I've paused the reminder emails.

== billing: invoice_copy
S Need a copy of invoice {invoice}
S Missing invoices for our records
S Can't download invoice PDF
L Could you send me a copy of invoice {invoice} from {date}?
L I can't find the invoices for the last three months in the portal.
L The download link for invoice {invoice} gives an empty PDF.
D Our auditor needs them this quarter.
D I only have the email notifications, not the PDFs.
D Please send them to our accounts address.
A I've attached a copy of invoice {invoice}. All past invoices are also available under Billing >
  Invoice history, where you can download them as PDF.
A Here are the invoices you asked for. The empty PDF was caused by a bug in the export that we fixed
  yesterday, so downloads should work again from the portal.

== billing: unexpected_renewal
S Unexpected renewal charge
S Why was I charged {amount}?
S Auto-renewal I did not want
L We were charged {amount} for an annual renewal that we didn't want.
L I thought I had cancelled, but my card was charged again on {date}.
L There's a {amount} charge from you that I don't recognise.
D Nobody on our team uses the account anymore.
D Please cancel and refund this renewal.
D I never got a reminder email before the renewal.
A I can see the annual renewal of {amount} on {date}. Since the account hasn't been used since then,
  I've cancelled the subscription and refunded the charge in full.
A The charge is the automatic renewal of your {plan} subscription. Renewals can be refunded within 30
  days, so I've processed a refund of {amount} and switched off auto-renewal.

== billing: wrong_currency
S Billed in the wrong currency
S Invoice currency change
S Can we pay in EUR instead of USD?
L Our invoices are in USD but our contract says EUR.
L We're based in {country} and would like to be billed in our local currency.
L Invoice {invoice} was issued in the wrong currency.
D Our bank charges extra fees for foreign currency payments.
D The amount should be {amount2}.
A I've changed the billing currency on your account, starting with the next invoice. Invoice {invoice}
  has been reissued in the correct currency for {amount2}.
A Billing currency is set per contract, and yours does specify EUR. The currency has been corrected and
  a new copy of {invoice} is attached.

== billing: late_fee
S Late fee charged although we paid on time
S Remove late payment fee
S Overdue notice by mistake
L We were charged a late fee on invoice {invoice} even though we paid on {date}.
L We got an overdue notice for {invoice}, but the payment went out last week.
L Why is there a {amount} late payment fee on our account?
D I can send the remittance advice.
D The bank transfer reference was {invoice}.
A You're right, the payment arrived on time but was matched to the wrong invoice. I've removed the late
  fee and the overdue notice from your account.
A Thanks for the remittance details. The fee on {invoice} has been waived and your balance is now zero.

== billing: tax_exempt
S Tax exemption certificate
S We should not be charged sales tax
S Tax charged on non-profit account
L We are tax exempt but invoice {invoice} includes sales tax.
L Where can I upload our tax exemption certificate?
L Sales tax of {amount} was added to our invoice by mistake.
D We are a registered non-profit.
D The certificate is attached.
A I've added the exemption certificate to your account, so future invoices won't include sales tax. The
  tax on {invoice} has been refunded.
A You can upload the certificate under Billing > Tax settings. Once it's verified, usually within two
  business days, we'll reissue {invoice} without the tax amount.

== billing: po_number
S Add PO number to invoice
S Purchase order reference missing
S Invoice needs our PO number
L Can you add purchase order number PO-{qty}{card4} to invoice {invoice}?
L Our procurement system rejects invoices without a PO reference.
L Please include our PO number on all future invoices.
D Without it the invoice can't be paid.
D The PO was issued by {employee} in procurement.
A I've added the PO number to your billing profile and reissued invoice {invoice} with the reference.
  Every new invoice will include it automatically.
A Done: invoice {invoice} now shows the purchase order number. Let me know if your procurement team needs
  it in a specific field.

== billing: seat_count
S Billed for too many seats
S Seat count on invoice is wrong
S We removed users but still pay for them
L We're being billed for {seats} seats but only have half that many active users.
L We removed several users on {date} and the invoice didn't change.
L Invoice {invoice} charges for more licenses than we use.
D Can we reduce the seat count?
D We would like a credit for the unused seats.
A I've reduced your subscription to match the active users and applied a prorated credit of {amount2}.
  Removed users free up a seat only once they're deleted, not just deactivated.
A Your seat count was still {seats} because deactivated users count as seats. I've cleaned this up and
  invoice {invoice} has been corrected.

== billing: transfer_not_applied
S Bank transfer not applied
S Payment sent but account shows overdue
S Wire transfer for {invoice}
L We paid {amount} by bank transfer on {date} but the account still shows an open balance.
L Our wire transfer for invoice {invoice} hasn't been applied.
L Payment was sent last week, why is the invoice still unpaid?
D Our bank confirmed the transfer went through.
D The reference we used was {invoice}.
A We found your transfer of {amount}; it arrived without the invoice reference so it wasn't matched. I've
  applied it to {invoice} and your balance is now settled.
A International transfers can take a few days to reach us. Once the payment of {amount} arrives I'll
  apply it to {invoice} myself and send you a confirmation.

== billing: discount_missing
S Discount not applied
S Promo code didn't work on invoice
S Missing {pct}% discount
L Our {pct}% discount wasn't applied to invoice {invoice}.
L We were promised {pct}% off for the first year but got charged full price.
L The promo code was accepted but the invoice shows the full amount.
D Sales confirmed the discount in writing.
D The full charge was {amount}.
A I've checked with the sales team and the {pct}% discount was agreed. I've applied it retroactively and
  issued a credit note against invoice {invoice}.
A Sorry about that. The discount was attached to the wrong subscription. It's fixed now, and the
  difference will be credited to your next invoice.

== technical_support: app_crash
S {app} crashes on startup
S App keeps crashing
S {app} closes immediately after opening
L {app} crashes every time I open it on my {device}.
L Since this morning {app} closes right after the splash screen.
L The app freezes and then crashes whenever I open a report.
D I'm on {os}.
D I already reinstalled it twice.
D Restarting the computer didn't help.
D It started after the update to version {version}.
A Thanks for the details. This crash is a known issue in version {version} on {os}. Please update to
  the latest release, which includes the fix, and let me know if it still happens.
A Could you send us the crash log? On {os} you'll find it under Help > Export diagnostics. In the
  meantime, clearing the local cache usually stops the crash on startup.
A I've reproduced the crash on a {device} with {os}. Our developers have a fix in testing; until it
  ships, starting {app} in safe mode is a working workaround.

== technical_support: error_code
S Error {error} when saving
S Getting error {error}
S Strange error message
L I get error {error} whenever I try to save a document.
L The system shows {error} when I submit the form.
L Since yesterday we see {error} on every page of the dashboard.
D Screenshot attached.
D It happens in Chrome and Edge.
D My colleague {employee} has the same problem.
A The {error} error means the request was blocked before it reached our servers. Please clear your
  browser cache and try again; if it persists, send me the time it happened so I can check the logs.
A Thanks for the screenshot. {error} is caused by an expired session token. Signing out and back in
  fixes it, and we're releasing a permanent fix this week.

== technical_support: slow_performance
S {app} is very slow
S Performance problems since update
S Everything takes forever to load
L {app} has become really slow since the update to {version}.
L Loading a simple report now takes more than a minute.
L The web app is extremely slow for me today.
D It used to be instant.
D Our internet connection is fine.
D It's worse in the mornings.
A We've identified a slow database query introduced in {version} and rolled out a fix this morning.
  Performance should be back to normal; please let me know if reports still load slowly.
A Could you run the connection check under Help > Diagnostics and send me the result? That will tell us
  whether the slowdown is on our side or in the network.

== technical_support: printer
S Printer not working
S Can't print to {printer}
S Printing stuck in queue
L I can't print to the {printer} on the second floor.
L My print jobs get stuck in the queue and never come out.
L The {printer} shows offline on my {device}.
D Other people can print fine.
D I tried turning it off and on again.
D It says the driver is unavailable.
A I've reinstalled the driver for the {printer} remotely. Please restart your computer and try printing
  a test page.
A The print queue on the server was stuck. I've cleared it and your jobs should come out now; if not,
  remove and re-add the printer from Settings.

== technical_support: email_sync
S Outlook not syncing
S Emails not arriving on my phone
S Mailbox stopped updating
L Outlook on my {device} stopped syncing new emails.
L I don't receive emails on my phone anymore, but webmail works.
L My calendar invites don't show up in the app.
D I'm on {os}.
D It stopped on {date}.
D I have removed and re-added the account.
A Your mailbox had reached its storage limit, which stops syncing. I've increased the quota, and new
  emails should arrive within a few minutes.
A Please remove the account from your {device}, restart it and add it again with the new server
  settings we sent last week. That fixes syncing in almost all cases.

== technical_support: api_integration
S API returns 500 errors
S Webhook not firing
S Integration with {app} broken
L Our calls to the /v2/orders API endpoint return 500 since {date}.
L The webhook to our system stopped firing yesterday.
L The {app} integration doesn't sync records anymore.
D Our API key is still valid.
D We haven't changed anything on our side.
D Request IDs are in the attached log.
A Thanks for the request IDs. A change in the /v2 API validation rejected requests with empty optional
  fields; we've rolled it back and your calls should succeed again.
A The webhook was disabled automatically after repeated timeouts from your endpoint. I've re-enabled it;
  please make sure your server answers within 10 seconds.

== technical_support: outage [hi]
S Service down
S Platform not loading
S Nobody can log in to the dashboard
L The whole platform is down for us, nothing loads.
L The dashboard returns a blank page for everyone in our office.
L Your service seems to be completely unavailable since {time}.
D We get {error} on every request.
D Our customers are calling us about it.
D Your status page still says everything is operational.
A We're aware of the outage and our engineers are working on it. I'll update you as soon as the service
  is restored, and you can follow progress on our status page.
A The outage was caused by a failed database failover and has now been resolved. Everything should be
  working again; please let me know if you still see {error}.

== technical_support: install_software
S Software installation request
S Please install {app}
S Need {app} on my laptop
L Could you install {app} on my {device}?
L I need {app} for a new project but I don't have admin rights.
L Please set up {app} for our new team member {employee}.
D My manager has approved it.
D I'm on {os}.
A I've pushed {app} to your {device} through the software center. It will install at your next restart.
A {app} is in our approved software catalogue, so you can install it yourself from the company portal
  under Software. Let me know if it asks for admin rights.

== technical_support: export_fails
S Export to CSV fails
S Report export broken
S Export file is empty
L Exporting the report to CSV fails with an error.
L The export only contains the first 1000 rows.
L When I export data the downloaded file is empty.
D It worked last week.
D The report has about {qty} rows.
A Exports over 1000 rows are now generated in the background and emailed to you. Please check your inbox
  for the link; it's valid for 7 days.
A We found a bug in the CSV export for reports with special characters. It's fixed as of this morning,
  so please try the export again.

== technical_support: notifications
S Notifications not working
S No push notifications on mobile
S Missing email alerts
L I don't get any push notifications on my {device} anymore.
L The app stopped sending me email alerts for new tasks.
L Notifications are delayed by several hours.
D Notifications are enabled in the settings.
D I'm on {os}.
A On {os}, notifications can be switched off by battery optimisation. Please allow {app} to run in the
  background and they should come back.
A We had a delay in our notification service yesterday that has been fixed. Please let me know if
  alerts are still late for you.

== technical_support: wifi
S Wi-Fi keeps dropping
S No internet in the meeting room
S Network connection problems
L The Wi-Fi in the office keeps disconnecting every few minutes.
L My {device} can't connect to the office network.
L There's no network connection in meeting room {qty}.
D Wired connection works.
D It's been like this since {date}.
A One of the access points on your floor had failed. We replaced it this morning, so the connection
  should be stable again.
A Please forget the network on your {device} and reconnect with your normal login. The certificate on
  the access points was renewed and older profiles can't connect.

== technical_support: hardware
S Laptop screen flickering
S Battery drains very fast
S Keyboard not working
L The screen on my {device} flickers constantly.
L My laptop battery only lasts about an hour now.
L Several keys on my {device} stopped working.
D It's about two years old.
D I dropped it last week.
D An external monitor works fine.
A That sounds like a hardware fault. I've booked a repair for your {device}; please bring it to the IT
  desk and we'll give you a loan laptop in the meantime.
A Please update the graphics driver first; it fixes most flickering on the {device}. If it continues,
  we'll swap the device.

== technical_support: file_sync
S Files not syncing to shared drive
S Sync conflict on shared folder
S Can't open files on the shared drive
L Files I save to the shared drive don't show up for my colleagues.
L I keep getting sync conflict copies of the same spreadsheet.
L I can't open any files on the shared drive since this morning.
D The sync icon shows an error.
D It's the {team} folder.
A The sync client on your computer was signed out. Please sign in again from the tray icon and the
  files will upload automatically.
A Sync conflicts happen when two people edit the same file offline. I've restored the latest version of
  your spreadsheet and removed the duplicate copies.

== technical_support: how_to [lo]
S How do I create a custom report?
S Question about dashboards
S Can I schedule exports?
L How do I set up a custom report in the dashboard?
L Is there a way to schedule a weekly export of our data?
L Can I change the default columns shown in the task list?
D I couldn't find it in the help center.
D We'd like to share it with the whole team.
A Yes, you can. Go to Reports > New report, choose your fields and save it as a template. Shared
  reports can be opened by everyone in your workspace.
A Scheduled exports are available under Settings > Data > Scheduled exports, where you can pick the
  day, format and recipients.

== technical_support: browser_issue
S Page doesn't display correctly
S Buttons missing in {browser}
S Layout broken after update
L The page layout is broken in {browser}, half the buttons are missing.
L I can't click the save button in {browser}.
L The editor doesn't load in my browser.
D It works in a private window.
D I've cleared the cache.
A This was a compatibility issue with the latest {browser} version. We've released a fix; please reload
  the page with Ctrl+F5.
A Please disable browser extensions for our site; ad blockers in particular hide some of our buttons.

== shipping: where_is_order
S Where is my order {order}?
S Order not arrived yet
S Still waiting for my delivery
L I ordered on {date} and order {order} still hasn't arrived.
L Where is my package? Order number {order}.
L My order {order} was supposed to be here days ago.
D The tracking number is {tracking}.
D I paid for standard shipping.
D I need it for an event.
A I checked order {order} with {carrier} and it's currently at their local depot. It should be
  delivered within the next two business days.
A Your order {order} left our warehouse on {date} and is in transit with {carrier} under tracking
  number {tracking}. I've asked them to confirm the delivery date.
A Thanks for your patience. {order} was delayed at our warehouse, but it shipped today with {carrier};
  you'll get a tracking email shortly.

== shipping: tracking_stuck
S Tracking not updating
S Tracking number doesn't work
S No movement on shipment {tracking}
L The tracking for {tracking} hasn't updated for five days.
L The tracking number you sent says it doesn't exist.
L My parcel is stuck "in transit" for a week.
D Carrier is {carrier}.
D Order number {order}.
A Tracking numbers can take 24-48 hours to activate. I've checked with {carrier} and your parcel is on
  its way; the tracking should update by tomorrow.
A I've opened an investigation with {carrier} for {tracking}. If the parcel doesn't move within three
  business days, we'll send a replacement at no cost.

== shipping: delivered_not_received
S Tracking says delivered but nothing arrived
S Package marked delivered, not received
S Missing delivery {order}
L Tracking for {order} says delivered, but I never received it.
L The parcel was marked delivered on {date}, but it's not here.
L {carrier} says they delivered my order, but nobody got it.
D I checked with my neighbours.
D There was no delivery note.
D Our reception didn't sign for anything.
A I'm sorry your parcel hasn't turned up. I've opened a claim with {carrier} for {order}; they usually
  answer within 48 hours, and if it can't be found we'll resend it.
A The delivery photo from {carrier} shows the parcel at a side entrance. Could you check there? If it's
  not there, let me know and I'll ship a replacement right away.

== shipping: change_address
S Change delivery address
S Wrong shipping address on order {order}
S Please update address before shipping
L Can I change the delivery address for order {order}?
L I entered the wrong shipping address on my last order.
L We moved to a new office in {city}, please ship {order} there.
D It hasn't shipped yet.
D The new address is in the attachment.
A I've updated the delivery address for {order} before it left the warehouse, so it will go to the new
  address in {city}.
A Your order has already been handed to {carrier}, so I've requested a redirect with them. They'll
  confirm by email; redirects can add one day.

== shipping: delay
S Delivery delayed
S Shipment {order} late
S Estimated delivery date passed
L The estimated delivery date for {order} was {date} and it's still not here.
L Why is my shipment taking so long?
L Our order of {qty} units was due last week.
D We have customers waiting for it.
D Nobody told us about a delay.
A There's a backlog at the {carrier} hub in {city}, which has delayed several shipments. Your order
  {order} is expected to arrive within 3 business days.
A I'm sorry about the delay. One item in {order} was back-ordered; the full order ships on {date2}.

== shipping: partial_delivery
S Only part of my order arrived
S Items missing from delivery {order}
S Partial shipment
L Only some of the items from order {order} arrived.
L We received 1 box of {order} but the packing slip says 3.
L The {product} from my order wasn't in the package.
D The rest isn't shown in tracking.
D Was it shipped separately?
A Your order was split into several parcels; the remaining items are in a second shipment with tracking
  number {tracking}, due tomorrow.
A I can see the {product} was missed at packing. I've sent it separately by express shipping at no
  cost.

== shipping: customs
S Customs fees for delivery
S Package held at customs
S Import duty charged
L My package for {order} is held at customs in {country}.
L The courier asked me to pay {amount} import duty for my order.
L Why do I have to pay customs fees on delivery?
D Your website said duties were included.
D I need the commercial invoice.
A For deliveries to {country} duties are paid by the recipient. As our checkout said they were included,
  we'll reimburse the {amount}; please send us the receipt.
A I've sent the commercial invoice to {carrier} so customs can release the package. It should continue
  its way within 1-2 days.

== shipping: express_upgrade
S Upgrade to express shipping
S Can I get my order faster?
S Next day delivery for {order}
L Can I upgrade order {order} to express shipping?
L Is it possible to get my order by {weekday}?
L We need the delivery sooner than planned.
D I'm happy to pay the difference.
D It's a gift.
A I've upgraded {order} to express. The difference of {amount2} will be charged to your original payment
  method, and delivery is expected by {weekday}.
A Unfortunately the order has already shipped with standard delivery, so I can't upgrade it anymore.
  It's expected to arrive on {date2}.

== shipping: international [lo]
S Do you ship to {country}?
S International shipping question
S Shipping costs abroad
L Do you deliver to {country}?
L How much is shipping to {country} for a small order?
L How long does international delivery usually take?
D I'd like to order {qty} units.
D I'm planning an order for next month.
A Yes, we ship to {country}. Delivery usually takes 5-8 business days and costs depend on the weight;
  you'll see the exact price at checkout.
A We deliver to {country} with {carrier}. Orders over {amount2} ship free, otherwise shipping is a flat
  rate shown at checkout.

== shipping: missed_delivery
S Missed delivery, need redelivery
S Courier didn't ring
S Redelivery for {order}
L The courier left a note saying I wasn't home, but I was.
L {carrier} tried to deliver {order} while I was out.
L How can I arrange a new delivery date for my parcel?
D I work from home all day.
D I would prefer a pickup point.
A I've arranged a redelivery with {carrier} for {weekday}. You can also choose a pickup point with the
  link in their notification.
A I've passed your complaint to {carrier}. Your parcel is at their depot in {city}; you can pick it up
  there or book a new delivery slot online.

== shipping: pickup_point
S Deliver to pickup point
S Change to parcel locker
S Collection point for order {order}
L Can order {order} be delivered to a parcel locker?
L I'd like to collect my order from a pickup point near me.
L Please send my parcel to the collection point in {city}.
D I'm not home during the day.
A I've changed the delivery of {order} to the pickup point you chose. You'll receive a code when the
  parcel is ready to collect.
A Pickup points can only be selected at checkout, but {carrier} lets you redirect the parcel with the
  tracking link for {tracking}.

== shipping: bulk_delivery
S Delivery schedule for large order
S Warehouse delivery window
S Pallet delivery for {order}
L We need the {qty} units of order {order} delivered to our warehouse between 8am and 2pm.
L Can you deliver our large order on a pallet?
L Our warehouse in {city} only accepts deliveries on weekdays.
D Please call before arrival.
D We need a delivery slot booking.
A I've added your delivery window to order {order}; the freight carrier will call the day before to
  confirm the slot.
A Orders of {qty} units ship on pallets by freight. I've passed your warehouse hours to the carrier so
  they book the slot with you directly.

== returns: return_request
S Return request for order {order}
S I want to return an item
S How do I return {product}?
L I'd like to return the {product} from order {order}.
L The {product} I bought isn't what I expected, can I send it back?
L How do I return an item I ordered on {date}?
D It's unused and in the original packaging.
D I'd prefer a refund rather than store credit.
A I've started a return for the {product} from {order}. You'll get a prepaid label by email; once we
  receive the item, the refund is processed within 5 business days.
A You can return it within 30 days. I've created return RMA-{card4} for {order}; please include the
  number in the parcel.
A No problem. Please pack the {product} in its original box and use the return label I've just sent.
  The refund goes back to your original payment method.

== returns: return_label
S Need a return label
S Return label not received
S Return label doesn't work
L I requested a return but never got the return label.
L The return label for {order} won't print.
L The carrier says my return label is invalid.
D I've checked my spam folder.
D The return number is RMA-{card4}.
A I've resent the prepaid return label for {order} to your email. It's valid for 14 days at any
  {carrier} drop-off point.
A The old label had expired. Here's a new one attached; you can also show the QR code at the drop-off
  point instead of printing it.

== returns: exchange_size
S Exchange for a different size
S Wrong size, want to swap
S Exchange request {order}
L The {product} is too small, can I exchange it for a bigger size?
L I'd like to swap the colour of the {product} from order {order}.
L Can I exchange my item instead of returning it?
D I'd like the exchange to ship as soon as possible.
A I've set up an exchange for {order}. We'll ship the new size as soon as the return is scanned by the
  carrier.
A Exchanges are free. Please return the {product} with the enclosed label and note the size you want;
  we'll send it right away.

== returns: damaged_on_arrival
S Item arrived broken
S Damaged product
S {product} broken out of the box
L The {product} from order {order} arrived broken.
L My {product} doesn't turn on, it was faulty out of the box.
L There's a big crack in the {product} I received.
D Photos attached.
D The outer box looked fine.
D I'd like a replacement.
A I'm sorry it arrived broken. I've shipped a replacement {product} today, and you don't need to send the
  faulty one back.
A Thanks for the photos. I've arranged a return for the damaged {product}; we'll refund or replace it,
  whichever you prefer.

== returns: return_window [lo]
S Can I still return this?
S Return policy question
S Return after 30 days
L I bought the {product} {days} days ago, can I still return it?
L What is your return policy for opened items?
L Is there a deadline for returns on sale items?
D I haven't used it much.
D It was a gift.
A Our return window is 30 days from delivery, so you can still return it. Opened items are accepted as
  long as they're complete and undamaged.
A Sale items can be returned within 14 days. As your order is older than that, I can offer store credit
  instead of a refund.

== returns: warranty
S Warranty claim
S {product} stopped working
S Faulty after two weeks
L My {product} stopped working after only two weeks.
L I'd like to make a warranty claim for the {product} from {order}.
L The {product} broke after normal use, is it covered?
D I still have the receipt.
D It's less than a year old.
A Your {product} is under warranty until {date2}. I've created RMA-{card4}; please send it back with the
  label attached and we'll repair or replace it.
A Sorry to hear that. Could you send a short video of the problem? If it's a manufacturing fault we'll
  replace the {product} under warranty.

== returns: return_status
S Status of my return
S Return received?
S Sent item back, no update
L I sent back the {product} from order {order} on {date}, has it arrived?
L What's the status of my return RMA-{card4}?
L My return was delivered to you a week ago and I haven't heard anything.
D The return tracking shows it was delivered.
A Your return for {order} arrived at our warehouse and is being inspected. You'll receive a confirmation
  within 2 business days.
A I can see RMA-{card4} was received on {date}. The inspection is complete and the return has been
  approved.

== returns: missing_parts
S Parts missing from package
S Incomplete product
S Missing accessories
L The {product} came without the power cable.
L The box was missing the mounting screws.
L Some accessories are missing from order {order}.
D The manual lists them as included.
A I'm sorry about that. I've sent the missing parts by express shipping; they should arrive within 2
  days.
A If you'd prefer, you can return the incomplete {product} with the label I've attached and we'll send
  a complete one.

== returns: gift_return
S Return a gift without receipt
S Gift return
S Exchange a present
L I received the {product} as a gift and would like to return it.
L Can I return a gift without the order number?
L Someone gave me a {product} that I already have.
D I don't have the receipt.
A Gifts can be returned for store credit without a receipt. Please send us the name of the person who
  ordered it and I'll find the order.
A I've found the order and created a gift return. The credit will be issued to you, not the buyer.

== returns: bulk_return
S Return part of our corporate order
S Return {qty} units
S Bulk return request
L We need to return {qty} units of the {product} from order {order}.
L We ordered too many {product} for our office, can we send some back?
L Part of our corporate order is surplus.
D They are unopened.
D Please send a pickup.
A I've arranged a freight pickup for the {qty} units. Once they're checked at the warehouse we'll credit
  your account.
A For returns of more than 50 units we need a return authorisation. I've created RMA-{card4} for order
  {order}; the pickup will be scheduled by our logistics team.

== returns: restocking_fee
S Restocking fee question
S Why is there a restocking fee?
S Fee for returned item
L Is there a restocking fee if I return an opened {product}?
L The return form mentions a restocking fee, how much is it?
L I don't want to pay a restocking fee for a faulty product.
D The item is defective.
A There's no restocking fee for faulty items. For unwanted opened items the fee is 15%, which would be
  {amount2} for your {product}.
A Since the {product} is defective, the restocking fee doesn't apply. I've noted it on your return.

== returns: rma_needed
S Need an RMA number
S RMA request for {device}
S Return authorisation
L I need an RMA number to send back the {device}.
L Our {device} is faulty and needs to be returned for repair.
L Can you issue a return authorisation for order {order}?
D The serial number is SN{card4}{qty}.
A I've created RMA-{card4} for your {device}. Please write the number on the outside of the box.
A Your return authorisation is RMA-{card4}. Send the unit with all accessories and we'll repair it
  within 10 business days.

== returns: cancel_return [lo]
S Cancel my return
S Changed my mind about the return
S Keep the item
L I started a return for order {order} but I'd like to keep the item after all.
L Can I cancel return RMA-{card4}?
L Please cancel my return request, I found a use for it.
A No problem, I've cancelled the return for {order}. You can ignore the label we sent.
A Return RMA-{card4} is cancelled. Enjoy your {product}!

== account_access: password_reset
S Password reset email not received
S Can't reset my password
S Reset link not working
L I requested a password reset but never received the email.
L The password reset link says it has expired.
L I forgot my password and the reset doesn't work.
D I checked my spam folder.
D My username is {email_user}.
D I've tried three times.
A I've sent a new reset link to your address; it's valid for 60 minutes. If it still doesn't arrive,
  please whitelist our sending domain.
A Reset links expire after one hour and only the latest one works. I've sent you a fresh link a minute
  ago.

== account_access: locked_out
S Account locked
S Locked out after failed logins
S Can't log in, account blocked
L My account is locked after too many failed login attempts.
L I'm locked out and can't access {app}.
L It says my account is temporarily blocked.
D I think I typed the old password.
D I need access for a meeting.
A I've unlocked your account. Please sign in again and reset your password if you're not sure which
  one is current.
A Accounts unlock automatically after 30 minutes, but I've unlocked yours right away. You can now sign
  in to {app}.

== account_access: mfa_new_phone
S New phone, lost authenticator
S Can't get two-factor code
S MFA reset request
L I got a new phone and my authenticator app codes are gone.
L I can't log in because I don't have my two-factor device anymore.
L Please reset my MFA, I replaced my {device}.
D I don't have the backup codes.
D My old phone was wiped.
A I've reset the two-factor setup on your account after verifying your identity. At your next login
  you'll be asked to register the authenticator app on your new phone.
A For security we need to verify your identity before resetting MFA. I've sent a verification link to
  your recovery email; once confirmed, the reset is done.

== account_access: sso_error
S SSO login fails
S Single sign-on error {error}
S Can't log in with company account
L Single sign-on gives me error {error} when I try to log in.
L I get redirected back to the login page in a loop after SSO.
L Our SSO login stopped working for my account.
D Other colleagues can log in fine.
D It started after my name change.
A Your account was still linked to your old email in our identity provider. I've updated the mapping and
  SSO should work again.
A {error} means the identity provider sent an unexpected user attribute. I've corrected your profile;
  please try again in a private window.

== account_access: username_forgotten [lo]
S Forgot my username
S Which email is my account on?
S Can't remember login
L I don't remember which email address I used for my account.
L What's my username? I haven't logged in for a while.
L I have two accounts and don't know which one is active.
A Your account is registered under {email_user}. You can reset the password from the login page.
A I found the active account and merged the old one into it, so you only need your usual email to log
  in.

== account_access: add_user
S Add a new user
S New user account for {employee}
S Please give access to our new colleague
L Please create an account for our new colleague {employee}.
L How do I add a new user to our team workspace?
L {employee} needs access to {app} starting {date2}.
D Same permissions as me, please.
D They are in the {team} team.
A I've created an account for {employee} with the same role as yours. They'll get an invitation email to
  set their password.
A Workspace admins can add users under Settings > Members > Invite. Since you're an admin, you can do
  this yourself; I've also sent {employee} an invite.

== account_access: deactivate_user
S Deactivate user {employee}
S Remove access for former employee
S Please disable account
L Please deactivate the account of {employee}, who left the company.
L Can you remove {employee}'s access to {app}?
L We need to disable a user account today.
D Their last day was {date}.
D Please transfer their files to me.
A I've deactivated {employee}'s account and transferred their files to you. The seat is now free for a
  new user.
A {employee}'s access to {app} has been removed. Their data is kept for 30 days in case you need it.

== account_access: change_email
S Change login email
S Update my email address
S New email for my account
L I'd like to change the email address I use to log in.
L Our company changed its domain, can you update my login email?
L My login email is still my old one from before I got married.
A I've updated your login email. You'll get a confirmation at the new address; the old one will no
  longer work for login.
A You can change it yourself under Profile > Email, but as your domain changed I've updated it for you.

== account_access: permissions
S Need admin rights
S Access denied to {team} workspace
S Permission request
L I get "access denied" when I open the {team} workspace.
L Can I get admin rights in {app}?
L I need edit permissions on the {team} project.
D My manager {employee} approved this.
D I had access before.
A I've added you to the {team} workspace with editor rights, approved by {employee}. Please sign out
  and back in for the change to apply.
A Admin rights have to be requested by your workspace owner. I've forwarded your request to {employee}
  for approval.

== account_access: account_suspended
S Account suspended
S Why is my account disabled?
S Account deactivated message
L When I log in it says my account is suspended.
L My account has been disabled and I don't know why.
L I can't access anything, it says the account was deactivated.
D I've been using it daily.
A Your account was disabled by mistake during a clean-up of inactive users. I've reactivated it and
  you can sign in again.
A The account was suspended because of an unpaid invoice on the organisation. Once your admin has
  settled it, access will be restored automatically.

== account_access: session_expires
S Keep getting logged out
S Session expires too quickly
S Logged out every few minutes
L {app} logs me out every few minutes.
L My session keeps expiring while I'm working.
L I have to log in again after every page.
D I'm using {browser}.
D It started this week.
A This is caused by a blocked cookie in {browser}. Please allow cookies for our domain and your session
  will last the normal 12 hours.
A We shortened session times by mistake in this week's release. It's fixed now.

== account_access: transfer_ownership
S Transfer account ownership
S Change account owner
S Owner left the company
L Our account owner {employee} left, can we transfer ownership to me?
L How do I make someone else the owner of our workspace?
L We need to change the primary account holder.
D I'm the new IT manager.
A I've transferred ownership to you after confirming with your billing contact. You now have full admin
  rights.
A Ownership transfers need written approval from the company. Please reply with a signed request and
  I'll make the change the same day.

== account_access: sms_code
S Not receiving verification code
S SMS code never arrives
S Login code missing
L I don't get the SMS verification code when I try to log in.
L The login code takes ages to arrive and then it's expired.
L My phone number changed so I can't get the code.
D I'm abroad at the moment.
A Some carriers delay our SMS abroad. I've switched your account to email codes for now.
A I've updated your phone number after verifying your identity. The next code will go to the new
  number.

== it_security: phishing_report
S Suspicious email
S Phishing attempt?
S Fake invoice email
L I received a suspicious email asking me to log in at {domain_bad}.
L Is this email from "IT support" real? It asks for my password.
L We got a fake invoice email with an attachment.
D I didn't click anything.
D Several colleagues got the same message.
D The sender address looks strange.
A Thanks for reporting it. This is a phishing email; we've blocked {domain_bad} and removed the message
  from all mailboxes.
A Good catch. Please don't open the attachment. We've added the sender to the block list and will warn
  everyone.

== it_security: clicked_link [hi]
S I clicked a phishing link
S Entered my password on a fake site
S Possible compromised account
L I clicked a link in an email and entered my password before I realised it was fake.
L I think I gave my credentials to a phishing site at {domain_bad}.
L I opened an attachment from an unknown sender and now my laptop is acting weird.
D It happened about an hour ago.
D I've already changed my password.
A Thank you for telling us right away. We've reset your password, signed out all sessions and are
  checking your account for unusual activity.
A Please disconnect your laptop from the network now. We've blocked {domain_bad} and a security engineer
  will call you in the next few minutes.

== it_security: malware_alert
S Antivirus alert
S Virus warning on my laptop
S Malware detected
L My antivirus shows a malware warning on my {device}.
L I keep getting pop-ups saying my computer is infected.
L Defender quarantined a file I downloaded.
D I don't know where it came from.
A The file was quarantined before it could run, so your {device} is safe. We'll run a full scan
  remotely tonight.
A Those pop-ups come from a malicious browser extension. I've removed it remotely; please don't click
  any of the messages.

== it_security: lost_device [hi]
S Lost my laptop
S Stolen phone
S Company device missing
L I lost my company laptop on the train this morning.
L My work phone was stolen in {city}.
L I can't find my {device} since the conference.
D It has customer files on it.
D I've reported it to the police.
A We've remotely locked and will wipe the device. Please also change your password; we'll send a
  replacement {device}.
A Thanks for reporting it quickly. The device is encrypted, and we've revoked its access to company
  systems.

== it_security: suspicious_login
S Unknown login on my account
S Login from {city}
S Security alert about sign-in
L I got an alert about a login from {city} that wasn't me.
L There's a sign-in from IP {ip} in my account history that I don't recognise.
L Someone logged into my account at 3am.
D I've never been to {city}.
A We've blocked the session from {ip}, reset your password and enabled sign-in alerts. Please set up
  two-factor authentication if you haven't.
A The login from {city} was through a VPN exit node. To be safe, we've signed out all sessions.

== it_security: data_leak [hi]
S Sent data to wrong recipient
S Accidental data disclosure
S Customer data sent externally
L I accidentally sent a spreadsheet with customer data to the wrong external address.
L A file with employee salaries was shared with a public link.
L I think our customer list was uploaded to a personal cloud drive.
D It contains about {qty} records.
D The recipient has not replied.
A Thanks for reporting this immediately. We've revoked the link and started our data incident process;
  our privacy officer will contact you today.
A We've asked the recipient to delete the file and confirm in writing. Please don't forward the email
  further.

== it_security: usb_policy [lo]
S Can I use a USB stick?
S USB drive blocked
S Question about external drives
L Am I allowed to use a USB stick to move files to a client's computer?
L My USB drive is blocked on my laptop, is that on purpose?
L What's the policy for external hard drives?
A USB storage is blocked by policy. Please use the secure file transfer portal to share files with
  clients instead.
A Only encrypted company-issued drives are allowed. You can request one from the IT desk.

== it_security: vulnerability_report
S Security vulnerability in your web app
S Responsible disclosure
S XSS vulnerability found
L I found a cross-site scripting vulnerability in your customer portal.
L Your login page leaks whether an email address is registered.
L I'd like to report a security issue through responsible disclosure.
D Proof of concept attached.
D I haven't shared this with anyone.
A Thank you for the report. Our security team has confirmed the issue and is working on a fix; we'll
  let you know when it's resolved.
A We've received your disclosure and assigned it reference SEC-{card4}. We'll respond with our assessment
  within 5 business days.

== it_security: firewall_request
S Firewall rule request
S Open port for {host}
S Whitelist IP address
L Please open port 443 on {host} for our new vendor.
L We need IP {ip} whitelisted on the firewall.
L Can you allow outbound traffic from {host} to our partner's API?
D Change ticket is approved.
A I've added the firewall rule for {host}. It's active now; please test the connection.
A Firewall changes need a security review. I've scheduled it for {weekday}.

== it_security: questionnaire [lo]
S Security questionnaire
S Request for SOC 2 report
S Vendor security assessment
L Our procurement team needs your SOC 2 report.
L Could you fill in our vendor security questionnaire?
L Do you have an ISO 27001 certificate?
D It's part of our annual vendor review.
A I've shared the SOC 2 report through our trust portal; you'll receive an access link after signing
  the NDA.
A Our security team will complete the questionnaire by {date2}.

== it_security: ransomware [hi]
S Files encrypted
S Ransom note on server
S Ransomware?
L All files on the shared drive have been renamed and there's a ransom note.
L My computer shows a message that my files are encrypted.
L Our file server {host} is encrypting files.
D Nobody can open anything.
A Please disconnect the affected machines from the network immediately. Our incident team is isolating
  {host} and restoring from backups.
A We've isolated the file server and started our ransomware playbook. Do not pay or contact the
  attackers.

== it_security: certificate_expiry
S SSL certificate expiring
S Certificate warning on website
S Renew TLS certificate
L The SSL certificate for our site on {host} expires on {date2}.
L Browsers show a certificate warning on our intranet.
L Please renew the TLS certificate for the VPN gateway.
A I've renewed the certificate for {host}. It's valid for another year.
A The warning came from an intermediate certificate that wasn't installed. It's fixed now.

== it_security: access_review
S Quarterly access review
S Remove stale accounts
S Who has admin access?
L For our audit we need a list of everyone with admin access to {app}.
L We're doing the quarterly access review, please send the user report.
L Several former employees still have accounts.
D The auditors want it by {date2}.
A I've attached the admin report for {app}. Stale accounts have been disabled.
A The report is attached. Please confirm which accounts can be removed and I'll remove them.

== sales: pricing_quote
S Quote for {seats} seats
S Pricing request
S Request for quotation
L Could you send us a quote for {seats} seats of the {plan} plan?
L We're evaluating your product and need pricing for our team.
L What would an annual license for {seats} users cost?
D We'd like to start next month.
D We'd prefer annual billing.
A Thanks for your interest! I've attached a quote for {seats} seats of {plan} with annual billing. Happy
  to walk you through it on a call.
A For {seats} users on the {plan} plan the annual price is {amount2}. I've attached a formal quote.

== sales: upgrade_plan
S Upgrade from {plan} to {plan2}
S Upgrading our subscription
S Interested in {plan2}
L We want to upgrade from {plan} to {plan2}.
L What does it cost to move our team to the {plan2} plan?
L Can we upgrade mid-contract?
D We need the advanced reporting.
A Great to hear! You can upgrade from {plan} to {plan2} anytime; you'll only pay the prorated
  difference for the rest of the term.
A I've prepared an upgrade offer for {plan2}. It keeps your current renewal date.

== sales: demo_request
S Request a demo
S Product demo for our team
S Can we see a demo?
L We'd like to schedule a product demo for our team.
L Could someone show us how the platform works?
L Is it possible to book a demo next {weekday}?
D There will be about {qty} people joining.
A I'd love to show you around! Here's a link to book a 30-minute demo at a time that suits you.
A I've reserved {weekday} at 10am for a demo. You'll receive an invite shortly.

== sales: volume_discount
S Volume discount
S Discount for large order
S Enterprise pricing
L Do you offer a volume discount for {seats} licenses?
L We're planning to roll this out company-wide, is there enterprise pricing?
L What discount can you offer for a three-year contract?
A For {seats} licenses we offer {pct}% off the list price. A multi-year contract adds another 5%.
A Enterprise pricing is tailored to your needs. I've asked our account executive to send an offer.

== sales: trial_extension [lo]
S Extend our trial
S Trial ends soon
S More time to evaluate
L Could you extend our free trial by two weeks?
L Our trial ends on {date2} and we haven't finished testing.
L Is it possible to get a longer trial?
A I've extended your trial until {date2}. Let me know if you need help with the evaluation.
A Sure, your trial is now 14 days longer.

== sales: partner_program
S Reseller partnership
S Partner program
S Become a reseller
L We're an IT consultancy and would like to resell your product.
L Do you have a partner program?
L How can we become an authorised reseller?
A Thanks for your interest in partnering with us! I've attached our partner program overview.
A Our partner team will contact you this week to discuss reseller margins.

== sales: contract_renewal
S Contract renewal
S Renewal offer
S Renewal terms for next year
L Our contract renews on {date2}, can we discuss the terms?
L We'd like to renew for another year with more seats.
L Can you send us the renewal offer?
A I've prepared the renewal offer for {seats} seats. Your price stays the same for another year.
A Happy to discuss! Let's schedule a call before {date2}.

== sales: plan_comparison [lo]
S Difference between plans
S Which plan is right for us?
S Question about features in {plan2}
L What's the difference between the {plan} and {plan2} plans?
L Does the {plan} plan include API access?
L Which plan would you recommend for a team of {seats}?
A {plan2} adds SSO, audit logs and priority support on top of {plan}. For {seats} people I'd recommend
  {plan2}.
A API access is included in all plans from {plan} upwards.

== sales: nonprofit
S Non-profit discount
S Discount for charities
S Education pricing
L Do you offer a discount for non-profit organisations?
L We're a university, is there academic pricing?
L Is there a discount for charities?
A Yes, registered non-profits get {pct}% off. Please send proof of status.
A We offer academic pricing. I've attached the price list.

== sales: procurement_docs
S Vendor registration form
S Need W-9 and company details
S Supplier onboarding
L Our procurement needs your W-9 and bank details to set you up as a vendor.
L Could you fill in our supplier onboarding form?
L Please send your company registration documents.
A I've attached our W-9 and the completed supplier form.
A Our finance team will complete the onboarding form within two days.

== sales: addon_purchase
S Buy add-on
S Add more storage
S Purchase extra module
L How can we buy the analytics add-on?
L We need more storage, what are the options?
L Can we add the advanced security module to our plan?
A The add-on costs {amount2} per month. I can add it to your subscription today.
A I've sent an offer for the extra storage.

== sales: bulk_hardware
S Order {qty} units of {product}
S Bulk purchase inquiry
S Price for {qty} {product}
L We want to buy {qty} units of the {product} for our offices.
L What's your price for a bulk order of {product}?
L Can you give us a quote for {qty} {product}?
A For {qty} units of {product} the unit price is {amount2}. Delivery is 2-3 weeks.
A I've attached a quote. Prices are valid for 30 days.

== sales: competitor_switch
S Switching from a competitor
S Migration from our current tool
S Moving to your platform
L We're thinking of switching from our current tool, do you help with migration?
L Can you match the price of our current provider?
L What does onboarding look like for a team of {seats}?
A We offer free migration for teams over 20 users. Our onboarding team will import your data.
A I've set up a call with our solutions engineer to plan the switch.

== hr: payroll_missing [hi]
S Salary not received
S Payroll missing this month
S My pay didn't arrive
L My salary for this month hasn't arrived in my bank account.
L Payroll didn't go through for me this month.
L I didn't receive my pay, and payday was {date}.
D My rent is due.
D Nothing changed with my bank details.
A I'm sorry for the trouble. Your payment was rejected by the bank because of a formatting error. We've
  resent it today; it should arrive within one business day.
A I've checked with payroll. Your salary was included in the run; please check again tomorrow, and if
  it's still missing we'll do an emergency payment.

== hr: payslip_error
S Wrong amount on payslip
S Payslip question
S Overtime missing from pay
L My payslip for {month} shows the wrong number of hours.
L My overtime from last month is missing from my payslip.
L The tax deduction on my payslip looks wrong.
D I worked {hours} hours of overtime.
A I've checked your timesheet and the overtime was approved after the payroll cut-off. It will be paid
  with next month's salary.
A The tax deduction changed because of the new tax year. I've attached an explanation.

== hr: leave_request [lo]
S Vacation days
S Leave balance question
S Holiday request
L How many vacation days do I have left this year?
L I'd like to book leave from {date2} for two weeks.
L Can I carry over unused holiday days to next year?
A You have {days} days left this year. You can carry over up to 5 days.
A Your leave request is approved. Please also enter it in the HR portal.

== hr: sick_leave
S Sick leave
S Off sick today
S Sick note
L I'm sick and won't be able to work today.
L How do I submit my doctor's note?
L I'll be off sick for the rest of the week.
A Get well soon! I've recorded your sick leave. Upload the doctor's note in the HR portal.
A Thanks for letting us know. No need for a note for up to 3 days.

== hr: benefits
S Benefits enrollment
S Health insurance question
S Pension contribution
L How do I enroll in the health insurance plan?
L Can I change my pension contribution?
L When is the open enrollment period for benefits?
A Open enrollment runs until {date2}. You can make changes in the benefits portal.
A You can change your pension contribution once per quarter in the HR portal.

== hr: onboarding
S New hire starting {date2}
S Onboarding for {employee}
S Contract for new employee
L We have a new hire, {employee}, starting on {date2}.
L Could you prepare the employment contract for {employee}?
L What do I need to do to onboard a new team member?
A I've prepared the contract and the onboarding plan for {employee}. They'll receive a welcome email.
A Please fill in the new hire form in the HR portal by {date2}.

== hr: bank_details
S Update bank details
S Change of address
S New bank account for salary
L I have a new bank account, how do I update it for my salary?
L I moved, please update my home address.
L Please change my bank details before the next payroll.
A You can update your bank details in the HR portal under Personal data. Changes before the 20th apply
  to this month's payroll.
A I've updated your address. Your next payslip will show it.

== hr: expense_claim
S Expense claim not reimbursed
S Travel expenses
S Reimbursement status
L I submitted an expense claim of {amount} on {date} and it hasn't been paid.
L How do I claim my travel expenses from the conference?
L When will my expenses be reimbursed?
A Your expense claim of {amount} was approved and will be paid with the next salary run.
A Expenses are claimed in the expense tool with receipts attached. Claims are paid monthly.

== hr: parental_leave
S Parental leave
S Maternity leave planning
S Paternity leave question
L I'm expecting a baby in {month} and want to plan my parental leave.
L How much paternity leave am I entitled to?
L What's the process for requesting maternity leave?
A Congratulations! You're entitled to the full parental leave policy; I've attached the guide.
A Please submit your leave request at least 8 weeks before. We can talk through the options.

== hr: employment_letter
S Employment verification letter
S Proof of employment
S Letter for landlord
L I need an employment verification letter for my new apartment.
L Can you write a letter confirming my salary for a mortgage application?
L My bank needs proof of employment.
A I've attached your employment verification letter.
A You'll receive the letter by {date2}.

== hr: training_budget [lo]
S Training budget
S Course reimbursement
S Conference attendance
L Can I use my training budget for an online course?
L How much training budget do I have this year?
L I'd like to attend a conference in {city}, is that covered?
A Each employee has an annual training budget of {amount2}. Online courses are covered.
A Please get your manager's approval first, then book through the HR portal.

== hr: resignation
S Resignation
S Notice period question
S Last working day
L I'd like to hand in my resignation. What's the process?
L How long is my notice period?
L My last working day will be {date2}, what do I need to return?
A Thank you for letting us know. Your notice period is one month.
A We'll schedule an exit interview and send you the return checklist.

== hr: timesheet
S Timesheet correction
S Wrong hours in timesheet
S Can't submit timesheet
L I entered the wrong hours in my timesheet for last week.
L My timesheet is locked and I can't submit it.
L Can you correct my timesheet for {date}?
A I've unlocked your timesheet. Please correct the hours and submit it again.
A I've corrected the hours for {date}. Your manager will need to approve it again.

== product_feedback: feature_request [lo]
S Feature request: dark mode
S Suggestion for the app
S Please add a feature
L It would be great if {app} had a dark mode.
L Could you add keyboard shortcuts to the editor?
L I'd love to be able to filter reports by custom fields.
D Our whole team would use it.
D Other tools we use already have this.
A Thanks for the suggestion! I've added your vote to the feature request; our product team reviews
  them every month.
A Great idea. It's already on our roadmap for later this year.

== product_feedback: redesign_complaint
S New design is confusing
S Feedback on the redesign
S Please bring back the old layout
L The new design makes it much harder to find things.
L I don't like the redesign, the menus are confusing.
L Please bring back the old layout.
D It takes me twice as long now.
A Thanks for the honest feedback. I've shared it with our design team; we're adding an option to
  switch to the compact layout.
A Sorry the new layout is confusing. Our guide walks through where everything has moved.

== product_feedback: praise [lo]
S Thank you!
S Great product
S Compliments to the team
L Just wanted to say the new version of {app} is fantastic.
L Your support team was really helpful last week, thanks!
L We love the new reporting features.
A Thank you so much for the kind words! I've passed them on to the team.
A That's great to hear, thanks for letting us know!

== product_feedback: integration_suggestion [lo]
S Integration with {app}
S Please integrate with {app}
S Connector suggestion
L It would be great to have an integration with {app}.
L Do you plan to support {app}?
L A connector for {app} would save us a lot of time.
A Thanks for the suggestion. An {app} integration is on our list; I've added your vote.
A We don't have plans for {app} yet, but I've shared your request with the product team.

== product_feedback: docs_unclear
S Documentation is unclear
S Help article outdated
S Docs missing information
L The help article about exports is outdated.
L The documentation for the API doesn't explain pagination.
L The setup guide doesn't match what I see in the app.
A Thanks for pointing this out. We've updated the article.
A Good catch. Our docs team will fix the guide this week.

== product_feedback: mobile_feedback
S Feedback on the mobile app
S Mobile app suggestions
S Mobile app is hard to use
L The mobile app is hard to use on a small screen.
L The mobile app needs offline mode.
L Some buttons in the mobile app are too small.
D I'm on {os}.
A Thanks for the feedback. I've passed it to our mobile team.
A Offline mode is planned for the next major release.

== product_feedback: pricing_feedback [lo]
S Feedback on pricing
S Pricing is too high
S New pricing model
L The new pricing is too expensive for small teams.
L I think the per-seat pricing doesn't work for us.
L The price increase was a surprise.
A Thanks for sharing this. I've passed your feedback to our pricing team.
A I understand. Let me know if you'd like to discuss options.

== product_feedback: accessibility
S Accessibility issue
S Screen reader support
S Low contrast text
L The app doesn't work well with a screen reader.
L The grey text on white background is hard to read.
L Some forms can't be used with the keyboard only.
A Thank you. Accessibility is important to us; I've logged this with our team.
A We're working on a contrast fix for the next release.

== product_feedback: survey_response [lo]
S Survey feedback
S Re: How did we do?
S Response to your survey
L I gave you a 6 in the survey and wanted to explain why.
L Here's some feedback from your customer survey.
L I'd like to add more detail to my survey response.
A Thank you for taking the time. Your feedback helps us improve.
A Thanks for the detail! I've shared it with the team.

== product_feedback: product_quality
S Quality of {product}
S Feedback on {product}
S {product} could be better
L The {product} works but feels cheaply made.
L I love the {product}, but the cable is too short.
L The {product} could use a better battery.
A Thanks for the feedback. I've shared it with our product team.
A Great point, we're working on an improved {product}.

== product_feedback: notification_overload
S Too many notifications
S Email overload
S Reduce notifications
L The app sends far too many notification emails.
L I get an email for every tiny change.
L Could there be a daily digest instead of single notifications?
A You can switch to a daily digest under Settings > Notifications.
A Thanks, a digest option is coming in the next release.

== product_feedback: search_feedback
S Search doesn't find anything
S Search feedback
S Search results are poor
L Search in {app} rarely finds what I'm looking for.
L The search should also look inside attachments.
L Search results are in a strange order.
A Thanks for the feedback. We're improving search relevance this quarter.
A Searching in attachments is on our roadmap.

== billing+returns: refund_after_return
S Refund not received for return
S Where is my refund?
S Refund for order {order}
L I returned the {product} from order {order} on {date} but the refund of {amount} still hasn't arrived.
L My return was accepted two weeks ago and I'm still waiting for the money.
L The refund for my returned item isn't showing on my card.
D The return tracking says it was delivered to you.
D It was paid by card ending {card4}.
A I can see your return for {order} was received. The refund of {amount} was issued on {date} and should
  reach your card within 5-7 business days.
A Your refund was delayed because the return was still being inspected. It's been approved now and
  {amount} is on its way back to you.

== billing+returns: charged_for_return
S Charged for returned item
S Return fee on my invoice
S Still charged after return
L I returned the {product} but I'm still being charged for it.
L There's a {amount} charge for a product I sent back.
L Invoice {invoice} still includes the item I returned.
D The return number was RMA-{card4}.
A I've checked RMA-{card4} and the return was received, so the charge of {amount} has been reversed.
A The charge will be credited once the return is processed at our warehouse, usually within 3 days.

== shipping+returns: returned_to_sender
S Package returned to sender
S My order went back to you
S Parcel sent back by {carrier}
L {carrier} sent my order {order} back to your warehouse.
L The tracking says my package is being returned to sender.
L My parcel was returned because the address was incomplete.
D I'd like it resent, not refunded.
A I'm sorry about this. Once the parcel arrives back, we'll reship {order} to the corrected address.
A Parcel {tracking} is on its way back to us. I can either resend it or refund you, just let me know.

== shipping+returns: damaged_in_transit
S Box arrived crushed
S Damaged during delivery
S Shipping damage to {product}
L The box for order {order} arrived crushed and the {product} inside is damaged.
L The parcel was wet and damaged when it arrived.
L The {product} was broken because of bad packaging.
D Photos attached.
A I'm sorry! I've opened a damage claim with {carrier} and will send a replacement {product} today.
A Please keep the packaging for the carrier's inspection. We'll replace the item either way.

== shipping+returns: wrong_item
S Wrong item received
S Received someone else's order
S Not what I ordered
L I received the wrong item in order {order}.
L The package contained a different {product} than I ordered.
L I got someone else's order.
A Sorry for the mix-up! I've sent the correct item and a return label for the wrong one.
A I've shipped the right {product} by express. Please return the wrong item with the label attached.

== account_access+it_security: locked_after_alert
S Locked out after security alert
S Suspicious login and now locked out
S Account blocked after unusual activity
L I got an alert about a login from {city} and now my account is locked.
L My account was blocked for unusual activity and I can't get in.
L Someone tried to log in as me and now I'm locked out.
A We locked your account after sign-in attempts from {ip}. I've verified your identity, reset your
  password and unlocked it.
A The lock was triggered by our security system. I've reset your credentials; please set up MFA.

== account_access+it_security: mfa_after_phishing
S Reset two-factor after phishing email
S MFA codes I didn't request
S Getting MFA prompts
L I keep getting MFA prompts on my phone that I didn't trigger.
L I received two-factor codes I never requested.
L After a phishing email my authenticator doesn't work.
A Unrequested MFA prompts mean someone has your password. I've reset it and signed out all sessions.
A Please deny any prompts you didn't trigger. We've reset your password and MFA.

== account_access+it_security: shared_password
S Sharing login credentials
S Can my colleague use my account?
S Shared account question
L Can my colleague {employee} use my login while I'm on holiday?
L We share one login for the team account, is that okay?
L Is it allowed to share my password with my assistant?
A Sharing passwords isn't allowed. I've created a separate account for {employee} with delegated access.
A Please don't share credentials. We can set up delegated access instead.

== billing+sales: upgrade_invoice
S Invoice for our upgrade
S Price after upgrade to {plan2}
S Upgrade charge question
L We upgraded to {plan2} last week, why is the invoice {amount}?
L Can you explain the charge for our upgrade to {plan2}?
L The upgrade quote said {amount2}, the invoice says {amount}.
A The invoice includes the prorated upgrade for the rest of your term. I've attached a breakdown.
A You're right, the upgrade should have been {amount2}. I've corrected the invoice.

== billing+sales: cancel_subscription
S Cancel subscription
S Cancellation and refund
S End our contract
L We want to cancel our {plan} subscription and get a refund for the remaining months.
L How do we cancel our contract before the renewal on {date2}?
L Please cancel our account at the end of the term.
A I've scheduled the cancellation for the end of your term on {date2}. You won't be charged again.
A I'm sorry to see you go. I've cancelled the subscription and refunded the unused months.

== hr+account_access: new_starter_accounts
S Accounts for new starter {employee}
S New employee needs logins
S Access for new hire
L Our new starter {employee} begins on {date2} and needs accounts set up.
L {employee} joins the {team} team on Monday and has no logins yet.
L Please set up email and system access for our new hire.
A I've created the accounts for {employee}; login details will be sent to their manager on {date2}.
A The accounts are ready. {employee} will receive a welcome email on their first day.

== hr+it_security: leaver_access
S Employee leaving, revoke access
S Offboarding {employee}
S Former employee still has access
L {employee} leaves on {date2}, please revoke access and collect the laptop.
L A former employee still seems to have access to our systems.
L We had to let {employee} go today, please disable everything immediately.
A I've revoked all of {employee}'s access and scheduled the laptop collection.
A All accounts for {employee} are disabled. We'll review the access logs.

== technical_support+it_security: vpn_blocked
S VPN blocked
S VPN says device not compliant
S Can't connect to VPN
L The VPN won't connect and says my {device} isn't compliant.
L I can't connect to the VPN since the security update.
L The VPN client blocks me with error {error}.
A Your device was missing the latest security patch. Please install updates and restart; the VPN will
  connect afterwards.
A {error} comes from the new device compliance check. I've re-enrolled your {device}.

== technical_support+account_access: app_login_error
S Login error in the app
S Error {error} at login
S App won't let me sign in
L The app shows error {error} when I try to sign in.
L I can log in on the website but not in the mobile app.
L The desktop app says my session is invalid.
A Please update the app; older versions can't sign in since our login change.
A {error} is a login problem in the app version you're using. The update fixes it.

== technical_support+product_feedback: export_suggestion
S Export is clumsy
S Export feature could be better
S Export to Excel
L The export works but it's really clumsy, it should export straight to Excel.
L Exporting reports takes too many clicks.
L The CSV export breaks accented characters in Excel.
A Thanks for the feedback. Open the CSV via Data > From text in Excel to keep accents; a native Excel
  export is planned.
A I've passed this on to our product team. In the meantime, saved exports reduce the number of clicks.
"""

# --------------------------------------------------------------------------------------------------
# Shared phrase pools.
# --------------------------------------------------------------------------------------------------
_PRIORITY_CUES: dict[str, tuple[str, ...]] = {
    "urgent": (
        "This is urgent, all users are affected.",
        "URGENT: production is down for the whole company.",
        "We need this fixed ASAP, our entire team is blocked.",
        "This is a critical issue affecting every customer.",
        "Please treat this as an emergency.",
        "We are losing money every minute this continues.",
        "Please escalate immediately, this is business critical.",
        "Nobody in the company can work right now.",
        "This is an emergency and needs attention right now.",
        "Our payroll deadline is today and this has to be solved ASAP.",
        "This could be a security breach, please respond immediately.",
        "All users affected, critical!",
    ),
    "high": (
        "I need this resolved today if possible.",
        "This is blocking my work.",
        "We have a hard deadline on {weekday}.",
        "Please prioritise this, our client demo is tomorrow.",
        "Several people on my team are affected.",
        "I need an answer before end of day.",
        "This is time-sensitive.",
        "Our month-end close is on {date2}, so we need this soon.",
        "Could you please look at this as soon as possible?",
        "It's quite important for us to get this sorted quickly.",
        "Our deadline is {date2}, so a quick reply would help a lot.",
        "Please handle this today, it's holding up a customer.",
    ),
    "medium": (
        "Could you take a look?",
        "Please let me know what I should do.",
        "Any help is appreciated.",
        "Let me know if you need more details.",
        "What are the next steps?",
    ),
    "low": (
        "No rush on this, whenever you get a chance.",
        "Just a quick question, not urgent at all.",
        "When you get a chance, could you let me know?",
        "Low priority, just curious.",
        "No hurry, sometime next week is fine.",
        "This is more of a nice-to-have.",
        "Just wondering for future reference.",
        "Feel free to get to this when things are quiet.",
        "Not urgent, just whenever someone has time.",
        "No need to reply quickly, it's not important.",
    ),
}
_SUBJECT_PREFIX: dict[str, tuple[str, ...]] = {
    "urgent": ("URGENT: ", "[URGENT] ", "Critical: ", "ASAP: "),
    "high": ("Important: ", "Time-sensitive: "),
    "low": ("Question: ", "Quick question: ", "FYI: "),
}
_VAGUE_SUBJECTS = ("Help", "Question", "Problem", "Issue", "Need help please", "Support request", "Hello")
_GREETINGS = ("Hi,", "Hello,", "Hi team,", "Dear Support,", "Hello support team,", "Good morning,", "Hey,")
_OPENINGS = (
    "I hope you're well.",
    "I hope this is the right place to ask.",
    "Not sure if this is the right team, but here goes.",
    "I'm writing on behalf of {company}.",
    "Sorry to bother you again.",
    "Thanks in advance for your help.",
)
_GENERIC_DETAILS = (
    "I already searched the help center but couldn't find anything.",
    "This started on {date}.",
    "My colleague {employee} mentioned the same thing.",
    "We've been customers for several years and this hasn't happened before.",
    "I called yesterday but nobody picked up.",
    "Previous ticket reference: #{ticket}.",
    "Please reply to this email, I'm travelling this week.",
    "I've attached a screenshot.",
)
_CLOSINGS = (
    "Thanks,",
    "Thanks in advance,",
    "Best regards,",
    "Cheers,",
    "Regards,",
    "Kind regards,",
    "Thank you,",
)
_FOLLOW_UPS = (
    "Following up on this, it's still not resolved.",
    "This still isn't fixed.",
    "Any update on this?",
    "I tried what you suggested but it didn't help.",
    "Thanks for the reply, but I still have the problem.",
)
_ANSWER_GREETINGS = ("Hi {first},", "Hello {first},", "Dear {first},", "Hi {first}, thanks for reaching out.")
_ANSWER_EXTRAS = (
    "Let me know if there's anything else I can help with.",
    "If you have any further questions, just reply to this email.",
    "Thanks for your patience.",
    "Sorry again for the inconvenience.",
    "I'll keep this ticket open until you confirm everything works.",
)
_ANSWER_PRIORITY = {
    "urgent": "I've flagged this as urgent and our on-call team is on it.",
    "high": "I've given this ticket high priority.",
}
_SIGNOFFS = ("Best regards,", "Kind regards,", "Thanks,", "Cheers,", "All the best,")
_TEAM_NAMES = {
    "billing": "Billing Team",
    "technical_support": "Technical Support",
    "returns": "Returns Team",
    "account_access": "Account Support",
    "shipping": "Shipping Team",
    "sales": "Sales Team",
    "it_security": "IT Security",
    "hr": "HR Service Desk",
    "product_feedback": "Customer Experience Team",
}
_AGENTS = (
    "Maria Lopez",
    "Tom Becker",
    "Aisha Khan",
    "Lukas Weber",
    "Priya Nair",
    "Sam O'Brien",
    "Elena Rossi",
    "Kenji Sato",
    "Grace Mensah",
    "Jonas Lind",
    "Fatima Haddad",
    "Oliver Grant",
)

_FIRST_NAMES = (
    "James", "Mary", "Ahmed", "Sofia", "Liam", "Olivia", "Noah", "Emma", "Lucas", "Mia", "Ethan", "Chloe",
    "Daniel", "Hannah", "Mateo", "Zoe", "Ravi", "Anika", "Chen", "Mei", "Yusuf", "Leila", "Kwame", "Ama",
    "Diego", "Lucia", "Pierre", "Camille", "Lars", "Ingrid", "Marek", "Zuzana", "Hiro", "Yuki", "Omar",
    "Nadia", "Carlos", "Elena", "Jack", "Grace", "Ben", "Sarah", "Paul", "Laura", "Mark", "Julia", "Tim",
    "Anna", "Ivan", "Olga", "Samir", "Rana", "Felix", "Clara", "Hugo", "Alice", "Victor", "Nora", "Arjun",
    "Divya",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Muller", "Rossi", "Dubois", "Nowak", "Kowalski", "Tanaka", "Kim",
    "Nguyen", "Patel", "Singh", "Okafor", "Mensah", "Silva", "Santos", "Jensen", "Larsen", "Novak",
    "Horvat", "Ivanova", "Petrov", "Haddad", "Cohen", "Murphy", "Kelly", "Brown", "Wilson", "Taylor",
    "Martin", "Lee", "Walker", "Young", "Hall", "Wright", "Fischer", "Schmidt", "Bauer", "Costa",
    "Moreau", "Laurent", "Eriksson", "Berg", "Ali", "Chowdhury", "Yamamoto", "Sato", "Reyes", "Cruz",
)  # fmt: skip
_COMPANIES = (
    ("Northwind Traders", "northwind"),
    ("Contoso Logistics", "contoso"),
    ("Fabrikam Foods", "fabrikam"),
    ("Bluebird Dental", "bluebird-dental"),
    ("Granite Peak Consulting", "granitepeak"),
    ("Lumen Architects", "lumen-arch"),
    ("Harbor Freight Partners", "harborfp"),
    ("Oakridge Clinic", "oakridge"),
    ("Sunrise Bakery", "sunrisebakery"),
    ("Vertex Analytics", "vertexanalytics"),
    ("Maple Insurance", "mapleins"),
    ("Quantum Robotics", "quantumrobotics"),
    ("Riverside School", "riverside-school"),
    ("Tidewater Marine", "tidewater"),
    ("Evergreen Landscaping", "evergreen"),
    ("Pinnacle Legal", "pinnaclelegal"),
    ("Brightpath Tutoring", "brightpath"),
    ("Cobalt Software", "cobaltsw"),
    ("Redwood Hotels", "redwoodhotels"),
    ("Nimbus Media", "nimbusmedia"),
    ("Alder & Finch Accountants", "alderfinch"),
    ("Solstice Energy", "solstice"),
    ("Ironclad Security", "ironclad"),
    ("Meadowlark Farms", "meadowlark"),
    ("Atlas Engineering", "atlaseng"),
    ("Copperleaf Design", "copperleaf"),
)
_TITLES = (
    "Operations Manager", "Accountant", "IT Administrator", "Office Manager", "Sales Director",
    "Software Engineer", "HR Coordinator", "Procurement Lead", "CFO", "Customer Success Lead",
    "Project Manager", "Marketing Specialist", "Head of Finance", "Team Lead", "Executive Assistant",
)  # fmt: skip
_PRODUCTS = (
    "Aurora Desk Lamp",
    "Nimbus Pro Headset",
    "Vela Standing Desk",
    "Orbit Webcam HD",
    "Kestrel Ergonomic Chair",
    "Pulse Wireless Mouse",
    "Atlas Backpack",
    "Zephyr Air Purifier",
    "Halo Smart Speaker",
    "Tern Docking Station",
    "Quill Mechanical Keyboard",
    "Lumo Monitor 27",
    "Cirrus Label Printer",
    "Echo Conference Phone",
)
_APPS = (
    "DeskPilot Web", "the mobile app", "Outlook", "Teams", "Slack", "Salesforce", "Jira", "Zoom",
    "the desktop client", "SAP", "Excel", "the customer portal",
)  # fmt: skip
_DEVICES = (
    "ThinkPad T14", "MacBook Pro", "Dell Latitude 7440", "Surface Pro 9", "iPhone 15", "Pixel 8",
    "HP EliteBook 840", "Galaxy S23", "iPad Air", "MacBook Air",
)  # fmt: skip
_OSES = ("Windows 11", "Windows 10", "macOS Sonoma", "macOS Ventura", "Ubuntu 22.04", "iOS 17", "Android 14")
_BROWSERS = ("Chrome", "Firefox", "Safari", "Edge")
_PRINTERS = ("HP LaserJet M404", "Brother HL-L2350", "Canon imageRUNNER", "Xerox VersaLink C405")
_ERRORS = (
    "0x80070005", "ERR_CONNECTION_RESET", "500 Internal Server Error", "E-4012", "AUTH_401", "403 Forbidden",
    "SYNC-117", "0xC004F074", "TIMEOUT_504", "INVALID_SESSION",
)  # fmt: skip
_CARRIERS = ("UPS", "DHL", "FedEx", "DPD", "Royal Mail", "USPS", "GLS", "PostNL")
_CITIES = (
    "Berlin", "Lisbon", "Toronto", "Chicago", "Manchester", "Lyon", "Warsaw", "Osaka", "Nairobi", "Denver",
    "Madrid", "Dublin", "Austin", "Rotterdam", "Milan", "Sydney",
)  # fmt: skip
_COUNTRIES = ("Germany", "Canada", "Brazil", "Japan", "Australia", "Norway", "Switzerland", "Mexico", "India")
_PLANS = ("Starter", "Team", "Business", "Enterprise")
_TEAMS = ("Finance", "Marketing", "Operations", "Engineering", "Sales", "Legal", "Customer Success")
_HOSTS = ("srv-app-03", "fs01", "web-prod-02", "db-replica-1", "vpn-gw-01", "mail-relay-2")
_BAD_DOMAINS = (
    "micros0ft-login.example",
    "secure-payrol1.example",
    "docu-sign-verify.example",
    "it-helpdesk-reset.example",
)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip
_CURRENCIES = (("$", "USD"), ("€", "EUR"), ("£", "GBP"), ("$", "USD"), ("€", "EUR"))
_TYPO_WORD = re.compile(r"[A-Za-z]{4,}")
_WORD = re.compile(r"\S+")
_SENTENCE_PUNCT = re.compile(r"[.,](?=\s|$)")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@dataclass(frozen=True)
class Scenario:
    """One ticket situation with its subject, body and answer templates."""

    key: str
    queues: tuple[str, ...]  # more than one for scenarios that are genuinely ambiguous between queues
    bias: str  # "", "hi" or "lo": the scenario's own pull on priority
    subjects: tuple[str, ...]
    lines: tuple[str, ...]
    details: tuple[str, ...]
    answers: tuple[str, ...]


@dataclass(frozen=True)
class TicketMeta:
    """What went into a ticket, for tests and analysis (not written to the CSV)."""

    scenario: str
    ambiguous: bool
    cue_priority: str  # the priority the text's cues point to
    priority_noise: bool  # label deliberately differs from cue_priority
    typos: int
    body_words: int
    quoted: bool
    signature: bool
    hurried: bool
    vip: bool


@dataclass(frozen=True)
class _Person:
    first: str
    last: str
    company: str
    domain: str
    title: str
    phone: str

    @property
    def email(self) -> str:
        return f"{self.first.lower()}.{self.last.lower()}@{self.domain}"

    @property
    def full_name(self) -> str:
        return f"{self.first} {self.last}"


def _parse_scenarios(text: str) -> tuple[Scenario, ...]:
    scenarios: list[Scenario] = []
    head: tuple[str, tuple[str, ...], str] | None = None
    parts: dict[str, list[str]] = {}

    def flush() -> None:
        if head is None:
            return
        key, queues, bias = head
        for kind in "SLA":
            if not parts.get(kind):
                raise ValueError(f"scenario {key} has no {kind} lines")
        scenarios.append(
            Scenario(
                key=key,
                queues=queues,
                bias=bias,
                subjects=tuple(parts["S"]),
                lines=tuple(parts["L"]),
                details=tuple(parts.get("D", [])),
                answers=tuple(parts["A"]),
            )
        )

    last_kind = ""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if raw.startswith("== "):
            flush()
            queue_part, _, rest = raw[3:].partition(":")
            tokens = rest.split()
            bias = tokens[1].strip("[]") if len(tokens) > 1 else ""
            queues = tuple(queue_part.strip().split("+"))
            unknown = [q for q in queues if q not in QUEUE_WEIGHTS]
            if unknown or bias not in _PRIORITY_BIAS:
                raise ValueError(f"bad scenario header: {raw!r}")
            head = (tokens[0], queues, bias)
            parts = {}
        elif raw.startswith("  "):
            parts[last_kind][-1] += " " + raw.strip()
        else:
            last_kind, _, value = raw.partition(" ")
            parts.setdefault(last_kind, []).append(value.strip())
    flush()
    return tuple(scenarios)


SCENARIOS: tuple[Scenario, ...] = _parse_scenarios(_SCENARIOS)


def scenarios_for(queue: str, *, ambiguous: bool) -> list[Scenario]:
    """Scenarios owned by ``queue`` alone, or (``ambiguous=True``) those it shares with another queue."""
    return [s for s in SCENARIOS if queue in s.queues and (len(s.queues) > 1) == ambiguous]


def add_typos(text: str, rng: Random, rate: float = _TYPO_RATE) -> tuple[str, int]:
    """Swap, drop or double letters in about ``rate`` of the words of 4+ letters; at least one typo."""
    count = 0

    def typo(word: str) -> str:
        i = rng.randrange(len(word) - 1)
        kind = rng.randrange(3)
        if kind == 0 and word[i] != word[i + 1]:
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if kind == 1:
            return word[:i] + word[i] + word[i:]
        return word[:i] + word[i + 1 :]

    def sub(match: re.Match[str]) -> str:
        nonlocal count
        if rng.random() >= rate:
            return match.group(0)
        count += 1
        return typo(match.group(0))

    out = _TYPO_WORD.sub(sub, text)
    if count == 0:
        matches = list(_TYPO_WORD.finditer(text))
        if matches:
            m = rng.choice(matches)
            out = text[: m.start()] + typo(m.group(0)) + text[m.end() :]
            count = 1
    return out, count


def _money(rng: Random, symbol: str, code: str, lo: int, hi: int) -> str:
    value = rng.randrange(lo * 100, hi * 100) / 100
    if rng.random() < 0.3:
        return f"{value:,.2f} {code}"
    return f"{symbol}{value:,.2f}"


def _format_date(rng: Random, day: dt.date) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"{_MONTHS[day.month - 1]} {day.day}"
    if style == 1:
        return day.isoformat()
    if style == 2:
        return f"{day.day:02d}/{day.month:02d}/{day.year}"
    return f"{day.strftime('%A')} {day.day} {_MONTHS[day.month - 1][:3]}"


def _slots(rng: Random, person: _Person, people: Sequence[_Person]) -> dict[str, str]:
    symbol, code = rng.choice(_CURRENCIES)
    base = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(600))
    later = base + dt.timedelta(days=rng.randrange(2, 45))
    colleague = rng.choice(people)
    plan, plan2 = rng.sample(_PLANS, 2)
    if _PLANS.index(plan) > _PLANS.index(plan2):
        plan, plan2 = plan2, plan
    return {
        "first": person.first,
        "company": person.company,
        "email_user": person.email,
        "order": f"ORD-{rng.randrange(10000, 99999)}",
        "invoice": f"INV-{base.year}-{rng.randrange(10000):05d}",
        "amount": _money(rng, symbol, code, 12, 4800),
        "amount2": _money(rng, symbol, code, 9, 3000),
        "date": _format_date(rng, base),
        "date2": _format_date(rng, later),
        "weekday": later.strftime("%A"),
        "month": _MONTHS[base.month - 1],
        "time": f"{rng.randrange(6, 20)}:{rng.randrange(60):02d}",
        "product": rng.choice(_PRODUCTS),
        "plan": plan,
        "plan2": plan2,
        "seats": str(rng.choice((5, 10, 12, 20, 25, 40, 50, 75, 120, 250, 500))),
        "qty": str(rng.choice((2, 3, 4, 6, 10, 15, 24, 40, 60, 100, 150, 300))),
        "pct": str(rng.choice((10, 15, 20, 25, 30))),
        "days": str(rng.randrange(3, 45)),
        "hours": str(rng.randrange(2, 30)),
        "card4": f"{rng.randrange(10000):04d}",
        "ticket": str(rng.randrange(10000, 99999)),
        "app": rng.choice(_APPS),
        "device": rng.choice(_DEVICES),
        "os": rng.choice(_OSES),
        "browser": rng.choice(_BROWSERS),
        "printer": rng.choice(_PRINTERS),
        "error": rng.choice(_ERRORS),
        "version": f"{rng.randrange(3, 9)}.{rng.randrange(0, 20)}.{rng.randrange(0, 10)}",
        "carrier": rng.choice(_CARRIERS),
        "tracking": rng.choice(("1Z", "JJD", "TRK", "CP")) + str(rng.randrange(10**9, 10**10)),
        "city": rng.choice(_CITIES),
        "country": rng.choice(_COUNTRIES),
        "employee": colleague.full_name,
        "team": rng.choice(_TEAMS),
        "host": rng.choice(_HOSTS),
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
        "domain_bad": rng.choice(_BAD_DOMAINS),
    }


def _make_people(rng: Random) -> tuple[list[_Person], list[_Person]]:
    def person(company: str, domain: str) -> _Person:
        if rng.random() < 0.5:
            phone = f"+1 555-01{rng.randrange(100):02d}"
        else:
            phone = f"+44 20 7946 0{rng.randrange(1000):03d}"
        return _Person(
            first=rng.choice(_FIRST_NAMES),
            last=rng.choice(_LAST_NAMES),
            company=company,
            domain=domain,
            title=rng.choice(_TITLES),
            phone=phone,
        )

    regular = [
        person(name, f"{slug}.example") for name, slug in _COMPANIES for _ in range(rng.randrange(6, 22))
    ]
    vip = [person("BigCorp Holdings", VIP_DOMAIN) for _ in range(12)]
    return regular, vip


def _weighted(rng: Random, options: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(list(options), weights=list(weights))[0]


def _queue_plan(n: int, rng: Random) -> list[str]:
    """Exact per-queue counts from QUEUE_WEIGHTS (largest remainder), shuffled."""
    raw = {q: w * n for q, w in QUEUE_WEIGHTS.items()}
    counts = {q: int(v) for q, v in raw.items()}
    by_remainder = sorted(QUEUES, key=lambda q: (raw[q] - counts[q], QUEUE_WEIGHTS[q]), reverse=True)
    for q in by_remainder[: n - sum(counts.values())]:
        counts[q] += 1
    plan = [q for q in QUEUES for _ in range(counts[q])]
    rng.shuffle(plan)
    return plan


def _signature(rng: Random, person: _Person) -> str:
    lines = [person.full_name]
    if rng.random() < 0.8:
        lines.append(person.title)
    lines.append(person.company)
    if rng.random() < 0.6:
        lines.append(f"Phone: {person.phone}" if rng.random() < 0.5 else person.phone)
    if rng.random() < 0.2:
        lines.append("This email and any attachments are confidential.")
    return "\n".join(lines)


def _quote_block(rng: Random, agent: str, person: _Person, subject: str, previous: str, when: dt.date) -> str:
    hour = f"{rng.randrange(8, 18)}:{rng.randrange(60):02d}"
    if rng.random() < 0.55:
        stamp = f"{when.strftime('%a')}, {when.day} {when.strftime('%b %Y')} at {hour}"
        header = f"On {stamp}, {agent} <support@helpdesk.example> wrote:"
        quoted = "\n".join("> " + line if line else ">" for line in previous.splitlines())
        return f"{header}\n{quoted}"
    return (
        "-----Original Message-----\n"
        f"From: {agent} <support@helpdesk.example>\n"
        f"Sent: {when.strftime('%A, %B')} {when.day}, {when.year} {hour}\n"
        f"To: {person.email}\n"
        f"Subject: {subject}\n\n{previous}"
    )


def _answer(rng: Random, agent: str, queue: str, priority: str, slots: dict[str, str], template: str) -> str:
    sentences = [template.format_map(slots)]
    if priority in _ANSWER_PRIORITY and rng.random() < 0.5:
        sentences.insert(0, _ANSWER_PRIORITY[priority])
    if len(_SENTENCE_END.findall(sentences[-1])) < 2 or rng.random() < 0.6:  # 2-5 sentences in all
        sentences.append(rng.choice(_ANSWER_EXTRAS))
    greeting = rng.choice(_ANSWER_GREETINGS).format_map(slots)
    return f"{greeting}\n\n{' '.join(sentences)}\n\n{rng.choice(_SIGNOFFS)}\n{agent}\n{_TEAM_NAMES[queue]}"


def _ticket(
    rng: Random, index: int, queue: str, people: tuple[list[_Person], list[_Person]]
) -> tuple[dict[str, str], TicketMeta]:
    regular, vip_people = people
    vip = rng.random() < 0.05
    person = rng.choice(vip_people if vip else regular)
    slots = _slots(rng, person, regular)

    ambiguous_pool = scenarios_for(queue, ambiguous=True)
    ambiguous = bool(ambiguous_pool) and rng.random() < _P_AMBIGUOUS
    scenario = rng.choice(ambiguous_pool if ambiguous else scenarios_for(queue, ambiguous=False))

    # Priority: the text's cues follow cue_priority; ~10% of labels then disagree with the cues.
    cue_priority = _weighted(rng, PRIORITIES, _PRIORITY_BIAS[scenario.bias])
    priority = cue_priority
    noise = rng.random() < _P_PRIORITY_NOISE
    if noise:
        idx = PRIORITIES.index(cue_priority)
        neighbours = [PRIORITIES[i] for i in (idx - 1, idx + 1) if 0 <= i < len(PRIORITIES)]
        priority = rng.choice(neighbours)

    # Body core: first line, details, generic context, priority cue.
    n_details = _weighted(rng, "0123", (0.25, 0.35, 0.25, 0.15))
    details = rng.sample(scenario.details, min(int(n_details), len(scenario.details)))
    if rng.random() < 0.3:
        details.append(rng.choice(_GENERIC_DETAILS))
    sentences = [rng.choice(scenario.lines), *details]
    show_cue = cue_priority != "medium" and rng.random() < (0.95 if cue_priority == "urgent" else 0.85)
    if show_cue:
        cue = rng.choice(_PRIORITY_CUES[cue_priority])
        if rng.random() < 0.4:
            sentences.insert(0, cue)
        else:
            sentences.append(cue)
    if rng.random() < 0.35:
        sentences.append(rng.choice(_PRIORITY_CUES["medium"]))
    filled = [s.format_map(slots) for s in sentences]
    if len(filled) >= 3 and rng.random() < 0.6:
        cut = rng.randrange(1, len(filled))
        core = " ".join(filled[:cut]) + "\n\n" + " ".join(filled[cut:])
    else:
        core = " ".join(filled)

    hurried = rng.random() < _P_HURRIED
    quoted = not hurried and rng.random() < _P_QUOTE
    typos = 0
    if rng.random() < _P_TYPOS:
        core, typos = add_typos(core, rng)

    subject = rng.choice(scenario.subjects).format_map(slots)
    if rng.random() < 0.06:
        subject = rng.choice(_VAGUE_SUBJECTS)
    if (
        cue_priority in _SUBJECT_PREFIX
        and show_cue
        and rng.random() < (0.5 if cue_priority == "urgent" else 0.2)
    ):
        subject = rng.choice(_SUBJECT_PREFIX[cue_priority]) + subject

    parts: list[str] = []
    signature = False
    if hurried:
        hasty = core.lower()
        if rng.random() < 0.5:
            hasty = _SENTENCE_PUNCT.sub("", hasty)
        parts.append(hasty)
        subject = subject.lower()
    else:
        if rng.random() < 0.7:
            parts.append(rng.choice(_GREETINGS))
        if quoted:
            parts.append(rng.choice(_FOLLOW_UPS))
        elif rng.random() < 0.25:
            parts.append(rng.choice(_OPENINGS).format_map(slots))
        parts.append(core)
        signature = rng.random() < _P_SIGNATURE
        closing = rng.choice(_CLOSINGS) + "\n" if rng.random() < 0.6 else ""
        if not signature:
            parts.append(closing + person.first)
        elif rng.random() < 0.4:  # "-- " separated signature block
            parts.extend((closing + person.first, "-- \n" + _signature(rng, person)))
        else:
            parts.append(closing + _signature(rng, person))
    answer_templates = list(scenario.answers)
    rng.shuffle(answer_templates)
    if quoted:
        agent = rng.choice(_AGENTS)
        previous = _answer(rng, agent, queue, "medium", slots, answer_templates[-1])
        when = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(600))
        parts.append(_quote_block(rng, agent, person, subject, previous, when))
        subject = rng.choice(("RE: ", "Re: ", "Re: ")) + subject
    body = "\n\n".join(parts)

    row = {
        "id": f"TCK-{index + 1:05d}",
        "subject": subject,
        "body": body,
        "queue": queue,
        "priority": priority,
        "answer": _answer(rng, rng.choice(_AGENTS), queue, priority, slots, answer_templates[0]),
        "requester": person.email,
        "language": "en",
    }
    meta = TicketMeta(
        scenario=scenario.key,
        ambiguous=len(scenario.queues) > 1,
        cue_priority=cue_priority,
        priority_noise=priority != cue_priority,
        typos=typos,
        body_words=len(_WORD.findall(core)),
        quoted=quoted,
        signature=signature,
        hurried=hurried,
        vip=vip,
    )
    return row, meta


def generate_with_meta(n: int = 2000, seed: int = 7) -> list[tuple[dict[str, str], TicketMeta]]:
    """Tickets plus what went into each one (scenario, cues, typos, ...)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = Random(seed)
    people = _make_people(rng)
    return [_ticket(rng, i, queue, people) for i, queue in enumerate(_queue_plan(n, rng))]


def generate(n: int = 2000, seed: int = 7) -> list[dict[str, str]]:
    """``n`` synthetic helpdesk tickets as dicts with the keys in COLUMNS; same seed, same tickets."""
    return [row for row, _ in generate_with_meta(n, seed)]


def write_csv(rows: Sequence[dict[str, str]], path: str | Path) -> None:
    """Write rows as UTF-8 CSV with a header (``\\n`` line endings, so output is byte-stable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--n", type=int, default=2000, help="number of tickets (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    rows = generate(args.n, args.seed)
    write_csv(rows, args.out)
    print(f"wrote {len(rows)} tickets to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
