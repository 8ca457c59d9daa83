// fleetpki dashboard: draws the overview's charts from the summary embedded in the page.
// No inline script anywhere (the Content-Security-Policy forbids it): data travels as JSON
// in <script type="application/json">, which browsers never execute.
(function () {
  "use strict";

  function drawCharts() {
    var holder = document.getElementById("summary-data");
    if (!holder || !window.Chart) { return; }
    var summary = JSON.parse(holder.textContent);
    if (!summary) { return; }
    var expiry = summary.expiry;
    var timeline = document.getElementById("expiry-chart");
    if (timeline && !Chart.getChart(timeline)) {
      new Chart(timeline, {
        type: "bar",
        data: {
          labels: ["expired"].concat(expiry.week_starts),
          datasets: [{
            label: "certificates expiring that week",
            data: [expiry.expired_last_90d].concat(expiry.per_week),
            backgroundColor: ["#b3261e"].concat(expiry.per_week.map(function (_, week) {
              return week < 5 ? "#e8a317" : "#3b6ea8";
            }))
          }]
        },
        options: {
          animation: false, maintainAspectRatio: false,
          plugins: { legend: { display: false } },
          scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }
        }
      });
    }
    var algorithms = document.getElementById("algorithm-chart");
    if (algorithms && !Chart.getChart(algorithms)) {
      var names = Object.keys(summary.algorithms);
      new Chart(algorithms, {
        type: "doughnut",
        data: {
          labels: names,
          datasets: [{
            data: names.map(function (n) { return summary.algorithms[n]; }),
            backgroundColor: ["#3b6ea8", "#5aa469", "#e8a317", "#8e5ea2", "#b3261e", "#6c757d"]
          }]
        },
        options: { animation: false, maintainAspectRatio: false }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", drawCharts);
  document.addEventListener("htmx:afterSwap", drawCharts);
})();
