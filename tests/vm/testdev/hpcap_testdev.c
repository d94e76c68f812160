// SPDX-License-Identifier: GPL-2.0
/*
 * Test fixture, not product code: drives hpcap-model's `testdev` PCI
 * function (tools/model/src/testdev.rs) from the guest to prove the
 * vfio-user transport end to end -- BAR registers read back, the device's
 * DMA reads and writes guest memory, and its MSI-X interrupt arrives.
 * Prints one line per check; the VM test reads them from dmesg.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/interrupt.h>
#include <linux/completion.h>
#include <linux/dma-mapping.h>

#define TESTDEV_ID	0x48504350
#define REG_ID		0x00
#define REG_SCRATCH	0x04
#define REG_DMA_LO	0x08
#define REG_DMA_HI	0x0c
#define REG_DMA_LEN	0x10
#define REG_DOORBELL	0x14
#define REG_STATUS	0x18
#define REG_IRQS	0x1c
#define DMA_BYTES	256
#define VECTOR		1

struct testdev {
	void __iomem *bar;
	struct completion done;
	unsigned int hits;
};

static irqreturn_t testdev_irq(int irq, void *data)
{
	struct testdev *t = data;

	t->hits++;
	complete(&t->done);
	return IRQ_HANDLED;
}

static int testdev_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct testdev *t;
	dma_addr_t dma;
	u8 *buf;
	int err, i, irq, bad = 0;
	u32 v;

	t = devm_kzalloc(&pdev->dev, sizeof(*t), GFP_KERNEL);
	if (!t)
		return -ENOMEM;
	init_completion(&t->done);
	err = pcim_enable_device(pdev);
	if (err)
		return err;
	t->bar = pcim_iomap_region(pdev, 0, "hpcap_testdev");
	if (IS_ERR(t->bar))
		return PTR_ERR(t->bar);

	v = ioread32(t->bar + REG_ID);
	iowrite32(0x5a5aa5a5, t->bar + REG_SCRATCH);
	if (v != TESTDEV_ID || ioread32(t->bar + REG_SCRATCH) != 0x5a5aa5a5) {
		dev_err(&pdev->dev, "testdev: registers FAILED (id %#x)\n", v);
		return -EIO;
	}
	dev_info(&pdev->dev, "testdev: registers ok\n");

	err = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (err)
		return err;
	pci_set_master(pdev);
	buf = dmam_alloc_coherent(&pdev->dev, 2 * DMA_BYTES, &dma, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < DMA_BYTES; i++)
		buf[i] = i * 7 + 3;

	err = pci_alloc_irq_vectors(pdev, 2, 2, PCI_IRQ_MSIX);
	if (err < 0) {
		dev_err(&pdev->dev, "testdev: MSI-X FAILED (%d)\n", err);
		return err;
	}
	irq = pci_irq_vector(pdev, VECTOR);
	err = devm_request_irq(&pdev->dev, irq, testdev_irq, 0, "hpcap_testdev", t);
	if (err)
		goto free_vectors;

	iowrite32(lower_32_bits(dma), t->bar + REG_DMA_LO);
	iowrite32(upper_32_bits(dma), t->bar + REG_DMA_HI);
	iowrite32(DMA_BYTES, t->bar + REG_DMA_LEN);
	iowrite32(VECTOR, t->bar + REG_DOORBELL);
	if (!wait_for_completion_timeout(&t->done, msecs_to_jiffies(10000))) {
		dev_err(&pdev->dev, "testdev: MSI-X FAILED (no interrupt in 10 s, status %u)\n",
			ioread32(t->bar + REG_STATUS));
		err = -ETIMEDOUT;
		goto free_irq;
	}
	v = ioread32(t->bar + REG_STATUS);
	for (i = 0; i < DMA_BYTES; i++)
		bad += buf[DMA_BYTES + i] != (u8)~buf[i];
	if (v != 1 || bad) {
		dev_err(&pdev->dev, "testdev: DMA FAILED (status %u, %d bytes differ)\n", v, bad);
		err = -EIO;
		goto free_irq;
	}
	dev_info(&pdev->dev, "testdev: DMA ok (%d bytes read and written at %pad)\n",
		 DMA_BYTES, &dma);
	dev_info(&pdev->dev, "testdev: MSI-X ok (vector %d, irq %d, %u interrupt(s), device counted %u)\n",
		 VECTOR, irq, t->hits, ioread32(t->bar + REG_IRQS));
	err = 0;
free_irq:
	devm_free_irq(&pdev->dev, irq, t);
free_vectors:
	pci_free_irq_vectors(pdev);
	pci_clear_master(pdev);
	return err;
}

static const struct pci_device_id testdev_ids[] = {
	{ PCI_DEVICE(0x1234, 0x4850) },
	{ }
};
MODULE_DEVICE_TABLE(pci, testdev_ids);

static struct pci_driver testdev_driver = {
	.name = "hpcap_testdev",
	.id_table = testdev_ids,
	.probe = testdev_probe,
};
module_pci_driver(testdev_driver);

MODULE_DESCRIPTION("hpcap-rs test fixture for hpcap-model's testdev function");
MODULE_LICENSE("GPL");
