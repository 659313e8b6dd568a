<?xml version="1.0" encoding="UTF-8"?>
<!-- ps-agent: structured CDA (CI-SIS) narrative to the HTML subset QTextBrowser renders.
     Shipped read-only inside the package (7.2); applied with XSLT access control DENY_ALL. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:h="urn:hl7-org:v3"
                exclude-result-prefixes="h">
  <xsl:output method="html" encoding="UTF-8" indent="no"/>
  <xsl:template match="/h:ClinicalDocument">
    <html><body>
      <h2><xsl:value-of select="h:title"/></h2>
      <xsl:apply-templates select="h:component/h:structuredBody/h:component/h:section"/>
    </body></html>
  </xsl:template>
  <xsl:template match="h:section">
    <h3><xsl:value-of select="h:title"/></h3>
    <xsl:apply-templates select="h:text"/>
    <xsl:apply-templates select="h:component/h:section"/>
  </xsl:template>
  <xsl:template match="h:text"><div><xsl:apply-templates/></div></xsl:template>
  <xsl:template match="h:paragraph"><p><xsl:apply-templates/></p></xsl:template>
  <xsl:template match="h:br"><br/></xsl:template>
  <xsl:template match="h:content"><span><xsl:apply-templates/></span></xsl:template>
  <xsl:template match="h:caption"><p><b><xsl:apply-templates/></b></p></xsl:template>
  <xsl:template match="h:list[@listType='ordered']"><ol><xsl:apply-templates select="h:item"/></ol></xsl:template>
  <xsl:template match="h:list"><ul><xsl:apply-templates select="h:item"/></ul></xsl:template>
  <xsl:template match="h:item"><li><xsl:apply-templates/></li></xsl:template>
  <xsl:template match="h:table">
    <table border="1" cellspacing="0" cellpadding="3"><xsl:apply-templates/></table>
  </xsl:template>
  <xsl:template match="h:thead|h:tbody|h:tfoot"><xsl:apply-templates/></xsl:template>
  <xsl:template match="h:tr"><tr><xsl:apply-templates/></tr></xsl:template>
  <xsl:template match="h:th"><th><xsl:apply-templates/></th></xsl:template>
  <xsl:template match="h:td"><td><xsl:apply-templates/></td></xsl:template>
  <xsl:template match="h:sub"><sub><xsl:apply-templates/></sub></xsl:template>
  <xsl:template match="h:sup"><sup><xsl:apply-templates/></sup></xsl:template>
  <xsl:template match="h:linkHtml"><xsl:apply-templates/></xsl:template>
  <xsl:template match="h:renderMultiMedia|h:footnote|h:footnoteRef"/>
</xsl:stylesheet>
